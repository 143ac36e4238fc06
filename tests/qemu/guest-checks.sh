#!/usr/bin/env bash
# Guest-level checks of QEMU's spapr-vmc device against the fake back-end (tests/qemu/fake_vmcd.py),
# in the test guest of scripts/build-guest.sh (kernel GUEST_KERNEL, default 6.1; its /init with
# vmc.probe=1 prints the DMA windows and runs vmcprobe.ko):
#   - the device-tree node and both DMA windows as the guest sees them
#   - the upstream driver reaches "ready" and REQUESTVMC returns the fake's DRC index
#   - H_COPY_RDMA arguments QEMU must reject itself never reach the back-end
# Sessions with vmcd, vmcd restarts and system reset are scripts/boot-test.sh's scenarios.
# Prints "PASS: guest/name" / "FAIL: guest/name: why" and a closing count; exits non-zero on failure.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib/common.sh"
. "$VMC_REPO/scripts/lib/vm.sh"
. "$VMC_REPO/scripts/lib/results.sh"

work=$(mktemp -d /tmp/vmc-guestchk.XXXXXX)
trap 'vm_cleanup; rm -rf "$work"' EXIT
pass() { result PASS "guest/$1"; }
fail() { result FAIL "guest/$1" "$2"; }

out=$("$VMC_REPO/scripts/build-qemu.sh") || { fail build-qemu "scripts/build-qemu.sh failed"; results_summary; exit 1; }
QEMU=$(last_value QEMU "$out")
if ! vm_guest --kernel "${GUEST_KERNEL:-6.1}"; then
    fail build-guest "$VM_GUEST_ERROR"; results_summary; exit 1
fi

# --- fake back-end: device tree, driver state, H_COPY_RDMA validation ----------------------------
SOCK="$work/fake.sock"
python3 "$VMC_REPO/tests/qemu/fake_vmcd.py" --remote-window-size 0x2000000 --drc-index 0x81000007 \
    --socket "$SOCK" >"$work/fake.backend.log" 2>&1 &
VM_PIDS+=($!)
if ! wait_for_socket "$SOCK" 10 $!; then
    fail fake-backend "fake_vmcd.py did not listen: $(head -c 300 "$work/fake.backend.log")"; results_summary; exit 1
fi
L="$work/fake.console"
qemu_start "$SOCK" 'vmc.probe=1 vmc.test="query --drc 0x81000007"' "$L" 120
wait "$QEMU_PID"
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

# H_COPY_RDMA arguments QEMU rejects itself (PAPR rcs: H_PARAMETER -4, H_SOURCE_PARM -13, H_DEST_PARM -14)
probe_ok=1
for pr in "bad-liobn -4" "both-local -4" "src-outside-window -13" "src-unmapped -13" "dst-unmapped -14"; do
    set -- $pr
    grep -aq "VMCTEST PROBE $1 $2" "$L" || { probe_ok=0; fail "copy-rdma-rejects-$1" "want rc $2, got: $(grep -a "VMCTEST PROBE $1 " "$L" | tr -d '\r')"; }
done
[ "$probe_ok" = 1 ] && pass copy-rdma-validates-liobns-window-and-tce-permissions
if grep -q 'COPY_RDMA' "$work/fake.backend.log"; then
    fail copy-rdma-rejected-locally "a rejected H_COPY_RDMA reached the back-end"
else
    pass copy-rdma-rejected-locally
fi

results_summary
[ "$R_FAIL" -eq 0 ]
