#!/usr/bin/env bash
# The main job: boot the default pseries guest with vmcd behind the spapr-vmc device and show the
# upstream ibmvmc driver binding and an HMC session exchanging messages. Does all set-up itself.
#   scripts/run-vm.sh [guest options]            run the demo session in the guest, then power off
#   scripts/run-vm.sh --shell [guest options]    same, then leave you in the guest's shell (Ctrl-a x)
#   scripts/run-vm.sh --print-cmdline            only print the vmcd and QEMU command lines
# Guest options (as scripts/boot-test.sh): --kernel 6.1|6.12, --driver-src DIR,
#   --kernel-image FILE [--modules-dir DIR]
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$VMC_REPO/scripts/lib/vm.sh"

mode=demo guest_opts=()
while [ $# -gt 0 ]; do
    case "$1" in
        --shell) mode=shell ;;
        --print-cmdline) mode=print ;;
        --demo) mode=demo ;;
        --kernel|--driver-src|--kernel-image|--modules-dir) guest_opts+=("$1" "${2:?$1 needs a value}"); shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) die "unknown option $1 (try --help)" ;;
    esac
    shift
done

work=$(mktemp -d /tmp/vmc-run.XXXXXX)
trap 'vm_cleanup' EXIT
vm_prepare "${guest_opts[@]}"
sock="$work/vmcd.sock"
append='vmc.test="basic --drc 0x81000001 --mtu 4096"'
[ "$mode" = shell ] && append="$append vmc.shell=1"

qemu_args "$sock" "$append"
if [ "$mode" = print ]; then
    echo "$VMCD --socket $sock &"
    printf '%q ' "$QEMU" "${QEMU_ARGS[@]}"; echo
    exit 0
fi

vmcd_start "$sock" "$work/vmcd.log" --log-level Information
log "vmcd listening on $sock (log: $work/vmcd.log)"
log "QEMU: $QEMU ${QEMU_ARGS[*]}"
if [ "$mode" = shell ]; then
    "$QEMU" "${QEMU_ARGS[@]}"
else
    timeout --kill-after=5 300 "$QEMU" "${QEMU_ARGS[@]}" </dev/null | tee "$work/console.log" \
        | grep --line-buffered -E 'ibmvmc|VMCTEST|vmc@' || true
    echo "--- vmcd's view of the session ---"
    cat "$work/vmcd.log"
    grep -q 'VMCTEST SUMMARY passed=[1-9][0-9]* failed=0' "$work/console.log" \
        || die "the guest's HMC session did not complete cleanly; console log: $work/console.log"
    echo "run-vm: the guest's ibmvmc driver bound to vmcd and its HMC session echoed messages"
fi
