#!/usr/bin/env bash
# Guest boot tests: the upstream ibmvmc driver in a pseries guest talking to vmcd through the
# patched QEMU. Builds whatever is missing, runs each scenario in its own VM, prints one
# "PASS: scenario/check" or "FAIL: scenario/check: why" line per check, exits non-zero on failure.
#   scripts/boot-test.sh [scenario...]    (default: all)   BOOT_TIMEOUT=seconds per boot (180)
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$VMC_REPO/scripts/lib/vm.sh"

BOOT_TIMEOUT=${BOOT_TIMEOUT:-180}
work=$(mktemp -d /tmp/vmc-boot.XXXXXX)
trap 'vm_cleanup' EXIT
fails=0

t0=$SECONDS
vm_prepare
log "set-up done in $((SECONDS - t0)) s (guest kernel $GUEST_ABI)"

# report SCENARIO CONSOLE-LOG: turn the guest's VMCTEST lines into PASS/FAIL lines.
report() {
    local sc=$1 con=$2 line name rest
    while IFS= read -r line; do
        line=${line%$'\r'}
        case "$line" in
            *"VMCTEST PASS "*) rest=${line#*VMCTEST PASS }; name=${rest%% *}
                echo "PASS: $sc/$name" ;;
            *"VMCTEST FAIL "*) rest=${line#*VMCTEST FAIL }; name=${rest%% *}
                echo "FAIL: $sc/$name: ${rest#"$name"}"; fails=$((fails + 1)) ;;
        esac
    done <"$con"
    if grep -qE 'Kernel panic|Oops:|BUG: |general protection' "$con"; then
        echo "FAIL: $sc/no-kernel-crash: $(grep -m1 -E 'Kernel panic|Oops:|BUG: ' "$con")"; fails=$((fails + 1))
    else
        echo "PASS: $sc/no-kernel-crash"
    fi
    if grep -q 'VMCTEST SUMMARY' "$con" && grep -q 'VMCTEST DONE' "$con"; then
        echo "PASS: $sc/completed"
    else
        echo "FAIL: $sc/completed: guest did not finish (timeout ${BOOT_TIMEOUT}s or crash); console: $con"
        fails=$((fails + 1)); tail -30 "$con" >&2
    fi
}

# scenario NAME "VMCD-ARGS" "KERNEL-APPEND"
scenario() {
    local sc=$1 vargs=$2 append=$3 sock="$work/$1.sock" con="$work/$1.console" start=$SECONDS
    log "scenario $sc"
    # shellcheck disable=SC2086
    vmcd_start "$sock" "$work/$sc.vmcd.log" $vargs
    qemu_start "$sock" "$append" "$con" "$BOOT_TIMEOUT"
    wait "$QEMU_PID" 2>/dev/null
    report "$sc" "$con"
    vm_cleanup
    log "scenario $sc took $((SECONDS - start)) s"
}

scenario_restart() {
    local sc=restart sock="$work/restart.sock" con="$work/restart.console" start=$SECONDS
    log "scenario $sc"
    vmcd_start "$sock" "$work/$sc.vmcd.log"
    qemu_start "$sock" 'vmc.test="restart --drc 0x81000001"' "$con" "$BOOT_TIMEOUT"
    if wait_for_line "$con" 'VMCTEST WAITING restart' 120 "$QEMU_PID"; then
        kill -KILL "$VMCD_PID"; wait "$VMCD_PID" 2>/dev/null
        sleep 1
        vmcd_start "$sock" "$work/$sc.vmcd.log"
        echo "PASS: $sc/vmcd-killed-and-restarted"
    else
        echo "FAIL: $sc/vmcd-killed-and-restarted: guest never reached the waiting point"; fails=$((fails + 1))
    fi
    wait "$QEMU_PID" 2>/dev/null
    report "$sc" "$con"
    vm_cleanup
    log "scenario $sc took $((SECONDS - start)) s"
}

want=${*:-"basic params twohmc restart"}
for sc in $want; do
    case $sc in
        basic)   scenario basic "" 'vmc.test="basic --drc 0x81000001 --mtu 4096;burst --mtu 4096"' ;;
        params)  scenario params "--max-mtu 16384 --pool-size 64 --drc-index 0x81000042" \
                     'vmc.mod="max_mtu=8192 buf_pool_size=16" vmc.test="basic --drc 0x81000042 --mtu 8192"' ;;
        twohmc)  scenario twohmc "--max-hmcs 2" 'vmc.mod="max_hmcs=2" vmc.test="twohmc --mtu 4096"' ;;
        restart) scenario_restart ;;
        *) die "unknown scenario $sc" ;;
    esac
done
log "boot tests took $((SECONDS - t0)) s; logs in $work"
[ "$fails" -eq 0 ]
