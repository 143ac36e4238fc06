#!/usr/bin/env bash
# Checks of QEMU's spapr-vmc device (vmc-user version 2, docs/protocol.md): its properties, every
# realize failure (each must print its own clear message), the device-tree node (dumped with
# -machine dumpdtb), the connection set-up against tests/qemu/fake_vmcd.py (an independent
# back-end written from the protocol document), what QEMU says and does when a back-end
# misbehaves (it keeps running, answers QMP and reconnects), and the set-up with real vmcd; then
# tests/qemu/guest-checks.sh (the test guest with the real ibmvmc driver; VMC_SKIP_GUEST_CHECKS=1
# skips it). QEMU command lines and waits come from scripts/lib/vm.sh (VMC_QEMU / VMC_VMCD name
# other binaries). Prints "PASS: name" / "FAIL: name: why" / "SKIP: name: why", then
# "N passed, N failed, N xfailed, N skipped"; exits non-zero on failure.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib/common.sh"
. "$VMC_REPO/scripts/lib/vm.sh"
. "$VMC_REPO/scripts/lib/results.sh"

work=$(mktemp -d /tmp/vmc-devchk.XXXXXX)
# a stopped back-end must be continued to die
trap 'for p in "${VM_PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; done; vm_cleanup; rm -rf "$work"' EXIT
pass() { result PASS "$1"; }
fail() { result FAIL "$1" "$2"; }
skip() { result SKIP "$1" "$2"; }

vm_tools
if "$QEMU" --version | grep -q 'version 10\.0\.'; then pass qemu-10.0; else fail qemu-10.0 "$("$QEMU" --version | head -1)"; fi
command -v dtc >/dev/null || apt_ensure device-tree-compiler
FAKE=(python3 "$VMC_REPO/tests/qemu/fake_vmcd.py")

# The machine of scripts/lib/vm.sh without default devices, with plain RAM (MACHINE) or the
# shared memfd vmcd needs (MACHINE + MEMFD).
qemu_base_args plain; base=("${QEMU_ARGS[@]}")
qemu_base_args memfd; MEMFD=("${QEMU_ARGS[@]:${#base[@]}}")
MACHINE=("${base[@]}" -nodefaults)
RAM_HINT='Use -object memory-backend-memfd,id=ram0,size=<-m size>,share=on -machine memory-backend=ram0'
# vmc_args SOCKET [PROPS]: the chardev and the device (VMC) as vm.sh writes them
vmc_args() { QEMU_ARGS=(); qemu_vmc_args ${2:+--props "$2"} "$1"; VMC=("${QEMU_ARGS[@]}"); }

# start_backend NAME ARGS...: start the fake back-end on $work/NAME.sock; sets SOCK, BPID
start_backend() {
    local name=$1; shift
    SOCK="$work/$name.sock"
    rm -f "$SOCK"
    "${FAKE[@]}" "$@" --socket "$SOCK" >"$work/$name.backend.log" 2>&1 &
    BPID=$!; VM_PIDS+=("$BPID")
    wait_for_socket "$SOCK" 5 "$BPID"
}

# run_qemu NAME SECONDS ARGS...: run QEMU to completion (bounded), output in $work/NAME.out; sets RC
run_qemu() {
    local name=$1 secs=$2; shift 2
    timeout --kill-after=5 "$secs" "$QEMU" "$@" </dev/null >"$work/$name.out" 2>&1
    RC=$?
}

# expect_failure NAME "fixed string"...: QEMU exited non-zero (not by timeout) printing every string
expect_failure() {
    local name=$1 want; shift
    if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
        fail "$name" "QEMU hung (killed by timeout)"; return
    elif [ "$RC" -eq 0 ]; then
        fail "$name" "QEMU exited 0; expected a realize error"; return
    fi
    for want in "$@"; do
        grep -qF -- "$want" "$work/$name.out" \
            || { fail "$name" "message '$want' missing; got: $(head -c 400 "$work/$name.out" | tr '\n' ' ')"; return; }
    done
    pass "$name"
    head -2 "$work/$name.out" | sed 's/^/    /' >&2
}

# start_qemu NAME ARGS...: QEMU in the background, paused (-S: no guest code runs), with a QMP
# socket; sets QPID, QMP
start_qemu() {
    local name=$1; shift
    QMP="$work/$name.qmp"
    "$QEMU" "${MACHINE[@]}" "${MEMFD[@]}" -S -qmp "unix:$QMP,server=on,wait=off" "$@" \
        </dev/null >"$work/$name.out" 2>&1 &
    QPID=$!; VM_PIDS+=("$QPID")
    wait_for_socket "$QMP" 5 "$QPID"
}
stop_qemu() { qmp "$QMP" quit >/dev/null 2>&1; wait "$QPID" 2>/dev/null; }
stop_backend() { kill "$BPID" 2>/dev/null; wait "$BPID" 2>/dev/null; }

# --- properties ---------------------------------------------------------------------------
run_qemu help 20 -device spapr-vmc,help
missing=""
for p in chardev reg riobn remote-window-size timeout-ms; do
    grep -q "^ *$p=" "$work/help.out" || missing+=" $p"
done
if [ "$RC" -eq 0 ] && [ -z "$missing" ] && grep -q '^spapr-vmc options:' "$work/help.out"; then
    pass help-lists-properties
else
    fail help-lists-properties "rc $RC, missing:${missing:- none}; got: $(tr '\n' ' ' <"$work/help.out" | head -c 300)"
fi

# --- realize failures (no back-end is needed for any of them) -----------------------------
vmc_args "$work/nobody.sock"; NB=("${VMC[@]}")
run_qemu no-chardev 30 "${MACHINE[@]}" "${MEMFD[@]}" -device spapr-vmc
expect_failure no-chardev "spapr-vmc: missing chardev" "Use -chardev socket,id=vmc0,path=<back-end socket>,reconnect-ms=1000"

run_qemu not-a-socket 30 "${MACHINE[@]}" "${MEMFD[@]}" -chardev null,id=vmc0 -device spapr-vmc,chardev=vmc0
expect_failure not-a-socket "chardev 'vmc0' must be a unix socket (the back-end gets file descriptors)"

run_qemu ram-not-memfd 30 "${MACHINE[@]}" "${NB[@]}"
expect_failure ram-not-memfd "guest RAM must be a shareable memfd that the back-end can map, but 'ppc_spapr.ram' is not" "$RAM_HINT"

run_qemu ram-memfd-not-shared 30 "${MACHINE[@]}" -object memory-backend-memfd,id=ram0,size=1G,share=off \
    -machine memory-backend=ram0 "${NB[@]}"
expect_failure ram-memfd-not-shared "guest RAM must be a shareable memfd that the back-end can map, but 'ram0' is not" "$RAM_HINT"

run_qemu ram-memfd-not-sealed 30 "${MACHINE[@]}" -object memory-backend-memfd,id=ram0,size=1G,share=on,seal=off \
    -machine memory-backend=ram0 "${NB[@]}"
expect_failure ram-memfd-not-sealed "guest RAM 'ram0' is not a memfd sealed against shrinking and growing" "Use memory-backend-memfd with seal=on"

QEMU_ARGS=(); qemu_vmc_args "$work/nobody.sock"; qemu_vmc_args --id vmc1 "$work/nobody.sock"
run_qemu second-device 30 "${MACHINE[@]}" "${MEMFD[@]}" "${QEMU_ARGS[@]}"
expect_failure second-device "only one spapr-vmc device is supported per guest"

vmc_args "$work/nobody.sock" timeout-ms=0
run_qemu timeout-zero 30 "${MACHINE[@]}" "${MEMFD[@]}" "${VMC[@]}"
expect_failure timeout-zero "timeout-ms must be 1..60000, not 0"

vmc_args "$work/nobody.sock" remote-window-size=0x1234
run_qemu window-unaligned 30 "${MACHINE[@]}" "${MEMFD[@]}" "${VMC[@]}"
expect_failure window-unaligned "remote-window-size must be a non-zero multiple of 4 KiB, not 0x1234"

vmc_args "$work/nobody.sock" reg=0x71000010,riobn=0x71000010
run_qemu riobn-conflict 30 "${MACHINE[@]}" "${MEMFD[@]}" "${VMC[@]}"
expect_failure riobn-conflict "remote LIOBN 0x71000010 is already in use" "Choose another with riobn="

# --- the guest may start before any back-end: realize does not wait ------------------------
t0=$SECONDS
if start_qemu nobackend "${NB[@]}" \
    && read -r ms reply < <(qmp "$QMP" query-status) && [[ "$reply" == *'"status": "prelaunch"'* ]]; then
    pass starts-without-backend; echo "    query-status after $((SECONDS - t0)) s: $reply" >&2
else
    fail starts-without-backend "$(head -c 300 "$work/nobackend.out")"
fi
read -r ms reply < <(qmp "$QMP" '{"execute": "migrate", "arguments": {"uri": "exec:cat >/dev/null"}}')
if [[ "$reply" == *'spapr-vmc: the VMC state lives in the back-end and cannot be migrated'* ]]; then
    pass migration-blocked
else
    fail migration-blocked "migrate answered: $reply"
fi
stop_qemu

# --- device tree -------------------------------------------------------------------------
# check_dt NAME DTB REMOTE-SIZE [RIOBN]: the vmc node and both DMA windows
check_dt() {
    local name=$1 dtb=$2 rsize=$3 riobn=${4:-} dts node win reg
    dts=$(dtc -I dtb -O dts "$dtb" 2>/dev/null) || { fail "$name" "no device tree dumped"; return; }
    node=$(awk '/^\t\tvmc@[0-9a-f]+ \{/{p=1} p{print} p&&/^\t\t\};/{exit}' <<<"$dts")
    [ -n "$node" ] || { fail "$name" "no /vdevice/vmc@ node"; return; }
    grep -q 'compatible = "IBM,vmc";' <<<"$node" || { fail "$name" "compatible is not IBM,vmc"; return; }
    grep -q 'device_type = "ibm,vmc";' <<<"$node" || { fail "$name" "device_type is not ibm,vmc"; return; }
    grep -q 'ibm,#dma-address-cells = <0x02>;' <<<"$node" && grep -q 'ibm,#dma-size-cells = <0x02>;' <<<"$node" \
        || { fail "$name" "dma cell properties missing"; return; }
    grep -q 'interrupts = <' <<<"$node" || { fail "$name" "no interrupts property"; return; }
    win=$(sed -nE 's/.*ibm,my-dma-window = <([^>]*)>;.*/\1/p' <<<"$node")
    read -r -a c <<<"$win"
    reg=$(sed -nE 's/.*reg = <(0x[0-9a-f]+)>;.*/\1/p' <<<"$node")
    if [ "${#c[@]}" -ne 10 ]; then fail "$name" "ibm,my-dma-window has ${#c[@]} cells, want 10 (two windows): $win"
    elif [ "${c[0]}" != "$reg" ]; then fail "$name" "local LIOBN ${c[0]} is not the device's ($reg)"
    elif [ "${c[5]}" = "${c[0]}" ]; then fail "$name" "remote LIOBN equals the local one"
    elif [ -n "$riobn" ] && [ "${c[5]}" != "$riobn" ]; then fail "$name" "remote LIOBN ${c[5]}, want $riobn"
    elif [ "$(printf '0x%x' $(( (c[3] << 32) | c[4] )))" != 0x10000000 ]; then fail "$name" "local window size wrong: $win"
    elif [ "$(printf '0x%x' $(( (c[8] << 32) | c[9] )))" != "$rsize" ]; then fail "$name" "remote window size not $rsize: $win"
    else pass "$name"; echo "    ${node//$'\n'/ }" | tr -s '\t ' ' ' >&2
    fi
}
# dump_dt NAME DEVICE-OPTIONS: the device tree of a paused QEMU (QMP dumpdtb), in $work/NAME.dtb
dump_dt() {
    vmc_args "$work/nobody.sock" "${2#,}"
    start_qemu "$1" "${VMC[@]}" \
        && qmp "$QMP" "{\"execute\": \"dumpdtb\", \"arguments\": {\"filename\": \"$work/$1.dtb\"}}" >/dev/null
    stop_qemu
}
dump_dt dt ""
check_dt dt-node-two-windows "$work/dt.dtb" 0x2000000
dump_dt dt-props ",riobn=0x12345678,remote-window-size=64M"
check_dt dt-riobn-and-window-size "$work/dt-props.dtb" 0x4000000 0x12345678

# --- set-up against the fake back-end (QEMU paused: no guest needed) -----------------------
start_backend ok --remote-window-size 0x2000000 || fail fake-start "the fake back-end did not start"
vmc_args "$SOCK"; start_qemu setup "${VMC[@]}"
if wait_for_line "$work/ok.backend.log" 'channel size 0x8000 sq 512 oq 1024' 10 \
    && grep -q 'request SET_FEATURES flags 0x2 size 8 fds 0' "$work/ok.backend.log" \
    && grep -q 'features 0x1' "$work/ok.backend.log" \
    && grep -q 'region 0: gpa 0x0 size 0x40000000 offset 0x0 sealed' "$work/ok.backend.log" \
    && grep -q 'request SET_CHANNEL flags 0x2 size 16 fds 4' "$work/ok.backend.log"; then
    pass setup-features-memtable-channel
else
    fail setup-features-memtable-channel "back-end log: $(tr '\n' ' ' <"$work/ok.backend.log" | head -c 700)"
fi
qmp "$QMP" system_reset >/dev/null
if wait_for_line "$work/ok.backend.log" 'RESET: the queue' 10; then pass system-reset-sends-reset
else fail system-reset-sends-reset "no RESET reached the back-end"; fi
stop_qemu
if [ -s "$work/setup.out" ]; then fail setup-quiet "QEMU printed: $(head -c 300 "$work/setup.out")"; else pass setup-quiet; fi
stop_backend

# memory hotplug: the MemoryListener sends the new table (feature MEM_TABLE_UPDATES)
start_backend hotplug || fail fake-start "the fake back-end did not start"
vmc_args "$SOCK"; start_qemu hotplug -m 1G,slots=2,maxmem=2G "${VMC[@]}"
wait_for_line "$work/hotplug.backend.log" 'channel size 0x8000' 10
qmp "$QMP" '{"execute": "object-add", "arguments": {"qom-type": "memory-backend-memfd", "id": "m1", "size": 268435456, "share": true}}' \
    '{"execute": "device_add", "arguments": {"driver": "pc-dimm", "id": "d1", "memdev": "m1"}}' >"$work/hotplug.qmp.out"
if wait_for_line "$work/hotplug.backend.log" 'region 1: gpa 0x40000000 size 0x10000000 offset 0x0 sealed' 10 \
    && [ "$(grep -c 'request SET_MEM_TABLE' "$work/hotplug.backend.log")" -eq 2 ]; then
    pass memory-hotplug-updates-table
else
    fail memory-hotplug-updates-table "QMP: $(cat "$work/hotplug.qmp.out"); back-end: $(grep 'MEM_TABLE\|region' "$work/hotplug.backend.log" | tr '\n' ' ')"
fi
stop_qemu
stop_backend

# backend_refused NAME "QEMU message" FAKE-ARGS...: QEMU keeps running (QMP answers), prints the
# message once although it reconnects every second, and connects again
backend_refused() {
    local name=$1 want=$2 ms reply; shift 2
    start_backend "$name" "$@" || { fail "$name" "the fake back-end did not start"; return; }
    vmc_args "$SOCK"; start_qemu "$name" "${VMC[@]}"
    if ! wait_for_line "$work/$name.backend.log" '^fake-vmcd: connection 3$' 15 "$QPID"; then
        fail "$name" "QEMU did not reconnect: $(tail -3 "$work/$name.backend.log" | tr '\n' ' ')"
    elif ! read -r ms reply < <(qmp "$QMP" query-status) || [ "$ms" -gt 2000 ]; then
        fail "$name" "QMP query-status: ${ms:-no answer} ms"
    elif [ "$(grep -cF -- "$want" "$work/$name.out")" -ne 1 ]; then
        fail "$name" "want '$want' once; got: $(head -c 500 "$work/$name.out" | tr '\n' ' ')"
    else
        pass "$name"; grep -F -- "$want" "$work/$name.out" | sed 's/^/    /' >&2
    fi
    stop_qemu
    stop_backend
}
backend_refused backend-other-version "spapr-vmc: the back-end speaks vmc-user version 1; this QEMU speaks version 2" --mode bad-version
backend_refused backend-refuses-features "spapr-vmc: the back-end refused SET_FEATURES: Invalid argument" --mode refuse-features
backend_refused backend-never-answers "spapr-vmc: the back-end did not answer GET_FEATURES within 1000 ms" --mode no-reply
backend_refused backend-window-too-big "spapr-vmc: the back-end needs a remote window of 0x4000000 bytes but the device has remote-window-size=0x2000000" \
    --remote-window-size 0x4000000
grep -qF 'Restart QEMU with -device spapr-vmc,remote-window-size=0x4000000' "$work/backend-window-too-big.out" \
    && pass backend-window-too-big-hint || fail backend-window-too-big-hint "$(head -c 400 "$work/backend-window-too-big.out")"
backend_refused backend-too-many-segments "spapr-vmc: the back-end offers 300 RDMA segments per copy (must be 1..254)" --max-segments 300

# --- real vmcd (vmc-user version 2; VMC_VMCD=<binary> tests another vmcd) -------------------
SOCK="$work/vmcd.sock"
vmcd_start "$SOCK" "$work/vmcd.backend.log"
vmc_args "$SOCK"
start_qemu vmcd -trace spapr_vmc_connected "${VMC[@]}"
if wait_for_line "$work/vmcd.out" 'spapr_vmc_connected' 15 "$QPID" && ! grep -q 'spapr-vmc:' "$work/vmcd.out"; then
    pass vmcd-setup
else
    fail vmcd-setup "QEMU printed: $(head -c 400 "$work/vmcd.out" | tr '\n' ' ')"
fi
stop_qemu
kill "$VMCD_PID"; wait "$VMCD_PID" 2>/dev/null

# --- guest level (the test guest with the real ibmvmc driver and vmcprobe.ko) -------------------
# Its result lines count here; its own closing line is shown indented.
if [ "${VMC_SKIP_GUEST_CHECKS:-0}" = 1 ]; then
    skip guest-checks "VMC_SKIP_GUEST_CHECKS=1"
else
    f0=$R_FAIL
    results_from "    guest-checks: " "$VMC_REPO/tests/qemu/guest-checks.sh"
    grc=$?
    [ "$grc" = 0 ] || [ "$R_FAIL" -gt "$f0" ] || fail guest-checks "exited with $grc"
fi
results_finish
