#!/usr/bin/env bash
# Guest-level checks of QEMU's spapr-vmc device against the fake back-end (tests/qemu/fake_vmcd.py,
# written from docs/protocol.md), in the test guest of scripts/build-guest.sh (kernel GUEST_KERNEL,
# default 6.1):
#   - the device-tree node and both DMA windows as the guest sees them; the upstream driver reaches
#     "ready" and REQUESTVMC returns the fake's DRC index
#   - raw hypercalls from vmcprobe.ko (tests/guest/vmcprobe.c, /init's vmc.probe=MODE) without a
#     back-end (vmc-user section 4) and with one: the SQ/OQ rings, the request slot, H_COPY_RDMA
#     through guest RAM; the H_COPY_RDMA arguments QEMU must reject never reach the back-end
#   - back-ends that break the protocol (CHANNEL_FAILED, a hostile oq_prod, an SQ never consumed):
#     QEMU says why, the guest gets its transport event, QEMU reconnects
#   - lifecycle: guest before back-end, back-end stopped (QMP keeps answering, transport event
#     within the deadline), resumed, restarted
#   - system reset: the device resets the back-end and the driver reaches ready again
# Sessions with vmcd, its restarts and the reset with vmcd are scripts/boot-test.sh's scenarios.
# Prints "PASS: guest/name" / "FAIL: guest/name: why" and a closing count; exits non-zero on failure.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib/common.sh"
. "$VMC_REPO/scripts/lib/vm.sh"
. "$VMC_REPO/scripts/lib/results.sh"

work=$(mktemp -d /tmp/vmc-guestchk.XXXXXX)
trap 'vm_cleanup; rm -rf "$work"' EXIT
pass() { result PASS "guest/$1"; }
fail() { result FAIL "guest/$1" "$2"; }

vm_qemu
vm_guest --kernel "${GUEST_KERNEL:-6.1}" || { fail build-guest "$VM_GUEST_ERROR"; results_finish; }
FAKE=(python3 "$VMC_REPO/tests/qemu/fake_vmcd.py")

# backend NAME FAKE-ARGS...: start the fake back-end on $work/NAME.sock; sets SOCK, BPID
backend() {
    local name=$1; shift
    SOCK="$work/$name.sock"; rm -f "$SOCK"
    "${FAKE[@]}" "$@" --socket "$SOCK" >>"$work/$name.backend.log" 2>&1 &
    BPID=$!; VM_PIDS+=("$BPID")
    wait_for_socket "$SOCK" 10 "$BPID"
}
stop_backend() { kill "$BPID" 2>/dev/null; wait "$BPID" 2>/dev/null; }
# boot NAME SOCKET APPEND [qemu_start options...]: the guest in the background, console in
# $work/NAME.console; sets QEMU_PID
boot() { local name=$1 sock=$2 append=$3; shift 3; qemu_start "$sock" "$append" "$work/$name.console" 180 "$@"; }
stop_guest() { kill "$QEMU_PID" 2>/dev/null; wait "$QEMU_PID" 2>/dev/null; }
# probe_checks NAME CONSOLE "check rc"...: the VMCTEST PROBE lines vmcprobe.ko printed
probe_checks() {
    local name=$1 con=$2 pr ok=1 got; shift 2
    for pr in "$@"; do
        set -- $pr
        got=$(grep -a "VMCTEST PROBE $1 " "$con" | tr -d '\r' | awk '{print $4}')
        [ "$got" = "$2" ] || { ok=0; fail "$name/$1" "want $2, got '${got:-nothing}'"; }
    done
    [ "$ok" = 1 ] && pass "$name"
}
# QEMU rejects these H_COPY_RDMA arguments itself (H_PARAMETER -4, H_SOURCE_PARM -13, H_DEST_PARM -14)
ARG_CHECKS=("bad-liobn -4" "both-local -4" "both-remote -4" "src-outside-window -13" "src-unmapped -13"
            "dst-unmapped -14" "src-not-readable -13" "dst-not-writable -14" "src-runs-into-unreadable -13")

# --- fake back-end: device tree and driver state ---------------------------------------------
backend fake --remote-window-size 0x2000000 --drc-index 0x81000007 \
    || { fail fake-backend "fake_vmcd.py did not listen: $(head -c 300 "$work/fake.backend.log")"; results_finish; }
boot fake "$SOCK" 'vmc.test="query --drc 0x81000007"'
wait "$QEMU_PID"
L="$work/fake.console"
win=$(sed -n 's/.*VMCTEST INFO dt-window \([0-9a-f]*\) .*/\1/p' "$L" | tr -d '\r' | head -1)
if grep -aq 'VMCTEST PASS dt-node compatible=IBM,vmc' "$L" && grep -aq 'VMCTEST INFO dt-window [0-9a-f]* device_type=ibm,vmc' "$L"; then
    pass dt-node-compatible
else
    fail dt-node-compatible "guest saw: $(grep -a 'dt-node\|dt-window' "$L" | tr -d '\r' | tr '\n' ' ')"
fi
# 10 cells: liobn, 0, 0, 0, 0x10000000, riobn, 0, 0, 0, 0x02000000 (the fake's remote window)
if [ "${#win}" -eq 80 ] && [ "${win:0:8}" != "${win:40:8}" ] && [ "${win:8:32}" = "00000000000000000000000010000000" ] \
    && [ "${win:48:32}" = "00000000000000000000000002000000" ]; then
    pass dt-two-dma-windows; echo "    ibm,my-dma-window = $win" >&2
else
    fail dt-two-dma-windows "ibm,my-dma-window = '${win}'"
fi
if grep -aq 'VMCTEST PASS query-ready' "$L"; then pass fake-driver-ready
else fail fake-driver-ready "$(grep -a 'VMCTEST\|ibmvmc' "$L" | tail -5 | tr -d '\r' | tr '\n' ' ')"; fi
if grep -aq 'VMCTEST PASS requestvmc DRC index 0x81000007' "$L"; then pass fake-request-vmc-drc
else fail fake-request-vmc-drc "$(grep -a 'requestvmc' "$L" | head -1 | tr -d '\r')"; fi
stop_backend

# --- raw hypercalls without a back-end (vmc-user section 4) ----------------------------------
boot probe-nobackend "$work/nobody.sock" "vmc.probe=nobackend"
wait "$QEMU_PID"
probe_checks hcalls-without-backend "$work/probe-nobackend.console" "${ARG_CHECKS[@]}" \
    "nb-reg-crq 0" "nb-send-crq 2" "nb-send-crq-bad 2" "nb-copy-rdma -1" "nb-request-vmc -1" \
    "nb-free-crq 0" "nb-send-crq-no-queue 2" "done 0"

# --- raw hypercalls with the fake back-end: ring, slot, RDMA through guest RAM ----------------
backend probe --drc-index 0x81000009 || fail fake-backend "fake_vmcd.py did not listen"
boot probe-backend "$SOCK" "vmc.probe=backend"
wait "$QEMU_PID"
probe_checks hcalls-with-backend "$work/probe-backend.console" "${ARG_CHECKS[@]}" \
    "be-reg-crq 0" "be-send-crq-bad-valid -4" "be-send-crq-bad-init-type -4" "be-send-crq-transport-event -4" \
    "be-send-crq-init 0" "be-init-response 1" "be-queue-slot0 $((0xC002))" "be-copy-to-remote 0" "be-copy-from-remote 0" \
    "be-rdma-roundtrip-differs 0" "be-copy-span-to-remote 0" "be-copy-span-from-remote 0" \
    "be-span-roundtrip-first-bad-byte -1" "be-remote-outside-window -15" "be-request-vmc 0" \
    "be-drc 0x81000009" "be-free-crq 0" "be-send-crq-after-free 2" "done 0"
# exactly the five accepted copies reached the back-end; the span went as two guest segments
n=$(grep -c 'slot COPY_RDMA' "$work/probe.backend.log")
if [ "$n" -eq 5 ] && grep -q 'slot COPY_RDMA direction 0 nseg 2 length 6144' "$work/probe.backend.log"; then
    pass copy-rdma-rejects-stay-in-qemu
else
    fail copy-rdma-rejects-stay-in-qemu "$n COPY_RDMA requests reached the back-end (want 5, one with 2 segments): $(grep 'COPY_RDMA' "$work/probe.backend.log" | tr '\n' ' ')"
fi
stop_backend

# --- back-ends that break the protocol once the guest has a queue: QEMU declares them lost,
# says why, gives the guest its transport event and reconnects --------------------------------
for case in "channel-failed|the back-end failed the channel (reason 2): fake-vmcd was told to fail" \
            "bad-oq|the back-end's output ring holds 5000 entries (it has 1024)" \
            "ignore-sq|the back-end consumed no submission for 1000 ms"; do
    mode=${case%%|*}; want=${case#*|}
    backend "$mode" --mode "$mode" || fail "backend-lost-$mode" "fake_vmcd.py did not listen"
    boot "lost-$mode" "$SOCK" "vmc.probe=backend vmc.hold=1"
    C="$work/lost-$mode.console"
    wait_for_line "$C" 'VMCTEST DONE' 120 "$QEMU_PID"
    wait_for_line "$work/$mode.backend.log" '^fake-vmcd: connection 2$' 10 "$QEMU_PID"
    stop_guest
    if ! grep -aqF "spapr-vmc: $want" "$C"; then
        fail "backend-lost-$mode" "QEMU did not say '$want': $(grep -a 'spapr-vmc' "$C" | head -3 | tr '\n' ' ')"
    elif ! grep -aq 'VMCTEST PROBE done 0' "$C"; then
        fail "backend-lost-$mode" "the guest did not finish its hypercalls: $(tail -3 "$C" | tr '\n' ' ')"
    elif ! grep -q '^fake-vmcd: connection 2$' "$work/$mode.backend.log"; then
        fail "backend-lost-$mode" "QEMU did not reconnect"
    else
        pass "backend-lost-$mode"
    fi
    stop_backend
done
# the ignored submission (the guest's init) costs the back-end the connection; the transport
# event lands in the guest's queue where the init response would have been
if grep -aq 'VMCTEST PROBE be-send-crq-init 0' "$work/lost-ignore-sq.console" \
    && grep -aq "VMCTEST PROBE be-queue-slot0 $((0xFF02))" "$work/lost-ignore-sq.console"; then
    pass backend-lost-ignore-sq-guest-sees-event
else
    fail backend-lost-ignore-sq-guest-sees-event "$(grep -a 'be-send-crq-init\|be-queue-slot0' "$work/lost-ignore-sq.console" | tr '\n' ' ')"
fi

# --- lifecycle: guest before back-end, back-end stopped (never freeze), resumed, restarted ----
# The guest's driver asks the adapter every 0.2 s (QUERY, then H_REQUEST_VMC through the slot).
QMP="$work/qmp.sock"
L="$work/lifecycle.console"
SOCK="$work/life.sock"; rm -f "$SOCK"
WATCH='VMCTEST WATCH [0-9]+ query=0 have_vmc=1 state=3 requestvmc=0 drc='
boot lifecycle "$SOCK" 'vmc.test="watch --count 600"' -qmp "unix:$QMP,server=on,wait=off"
if ! wait_for_line "$L" 'VMCTEST WATCH 4 ' 90 "$QEMU_PID"; then
    fail lifecycle "the guest did not start watching: $(tail -5 "$L" | tr '\n' ' ')"
else
    if grep -aqE "$WATCH" "$L"; then fail guest-before-backend "driver ready with no back-end"; fi
    backend life --drc-index 0x8100000a
    if wait_for_line "$L" "${WATCH}0x8100000a" 20 "$QEMU_PID"; then
        pass guest-before-backend-then-ready
    else
        fail guest-before-backend-then-ready "$(grep -a 'VMCTEST WATCH' "$L" | tail -3 | tr '\n' ' ')"
    fi
    # stall: SIGSTOP the back-end while the guest keeps asking it
    base=$(count_lines "$L" 'virtual adapter failed')
    kill -STOP "$BPID"; t0=$(date +%s%N)
    (wait_until 10 "$QEMU_PID" eval '[ "$(count_lines "$L" "virtual adapter failed")" -gt "$base" ]' \
        && date +%s%N >"$work/event.time") &
    watcher=$!
    worst=0 status=""
    for i in 1 2 3 4; do
        read -r ms reply < <(qmp "$QMP" query-status 2>/dev/null || echo "99999 none")
        [ "$ms" -gt "$worst" ] && worst=$ms
        [[ "$reply" == *'"status": "running"'* ]] && status+="running " || status+="$reply "
        sleep 0.3   # spread the queries over the stall
    done
    if [ "$worst" -le 2000 ] && [ "$status" = "running running running running " ]; then
        pass stalled-backend-qmp-answers; echo "    slowest query-status during the stall: $worst ms" >&2
    else
        fail stalled-backend-qmp-answers "slowest query-status $worst ms, status: $status"
    fi
    wait "$watcher"
    if [ -s "$work/event.time" ]; then
        t=$(( ($(cat "$work/event.time") - t0) / 1000000 ))
        # one timeout-ms (1000) for the request that finds the stall, plus the guest's 0.2 s poll
        if [ "$t" -le 2000 ]; then pass stalled-backend-transport-event; else fail stalled-backend-transport-event "after $t ms"; fi
        echo "    transport event in the guest $t ms after SIGSTOP" >&2
    else
        fail stalled-backend-transport-event "no transport event in the guest: $(grep -a 'VMCTEST WATCH' "$L" | tail -3 | tr '\n' ' ')"
    fi
    n=$(count_lines "$L" "${WATCH}0x8100000a")
    kill -CONT "$BPID"
    if wait_until 20 "$QEMU_PID" eval '[ "$(count_lines "$L" "${WATCH}0x8100000a")" -gt "$n" ]' \
        && [ "$(count_lines "$work/life.backend.log" 'slot REG_CRQ entries [0-9]* flags 0x1')" -ge 2 ]; then
        pass stalled-backend-resumed-reconnects
    else
        fail stalled-backend-resumed-reconnects "$(grep -a 'VMCTEST WATCH' "$L" | tail -3 | tr '\n' ' '); back-end: $(tail -3 "$work/life.backend.log" | tr '\n' ' ')"
    fi
    # restart: a new back-end process on the same socket
    base=$(count_lines "$L" 'virtual adapter failed')
    kill -9 "$BPID"; wait "$BPID" 2>/dev/null
    backend life --drc-index 0x8100000b
    if wait_until 10 "$QEMU_PID" eval '[ "$(count_lines "$L" "virtual adapter failed")" -gt "$base" ]' \
        && wait_for_line "$L" "${WATCH}0x8100000b" 20 "$QEMU_PID"; then
        pass restarted-backend-transport-event-and-ready
    else
        fail restarted-backend-transport-event-and-ready "$(grep -a 'VMCTEST WATCH' "$L" | tail -4 | tr '\n' ' ')"
    fi
    if grep -aE 'spapr-vmc|qemu-system' "$L" \
        | grep -aEqv 'spapr-vmc: (the back-end|connected to)|Unable to connect character device vmc0'; then
        fail lifecycle-qemu-messages "unexpected QEMU output: $(grep -aE 'spapr-vmc|qemu-system' "$L" | head -5 | tr '\n' ' ')"
    fi
fi
stop_guest
stop_backend

# --- system reset: the guest reboots; the device frees the queue and sends RESET, the driver
# probes again and reaches ready again (stopped after the second boot) -------------------------
if backend reset; then
    L="$work/reset.console"
    boot reset "$SOCK" 'vmc.reboot=1 vmc.test="query"' --reboot
    wait_until 150 "$QEMU_PID" eval '[ "$(count_lines "$L" "VMCTEST PASS query-ready")" -ge 2 ]'
    stop_guest
    if [ "$(count_lines "$L" 'VMCTEST PASS query-ready')" -ge 2 ] \
        && grep -q 'RESET: the queue and everything for it dropped' "$work/reset.backend.log"; then
        pass system-reset-driver-ready-again
    else
        fail system-reset-driver-ready-again "$(grep -a 'VMCTEST\|ibmvmc\|spapr-vmc' "$L" | tail -6 | tr '\n' ' '); back-end: $(grep -c RESET "$work/reset.backend.log") RESET"
    fi
    stop_backend
else
    fail system-reset-driver-ready-again "the fake back-end did not start"
fi

results_finish
