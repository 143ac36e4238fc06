#!/usr/bin/env bash
# Checks of QEMU's spapr-vmc device: its properties, every realize failure (each must print its
# own clear message), the device-tree node it builds (dumped with -machine dumpdtb), negotiation
# against the fake back-end and, when it is built, real vmcd; then tests/qemu/guest-checks.sh
# (a minimal guest with the real ibmvmc driver; VMC_SKIP_GUEST_CHECKS=1 skips it).
# Prints "PASS: name" / "FAIL: name: why" / "SKIP: name: why"; exits non-zero on failure.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib/common.sh"

work=$(mktemp -d /tmp/vmc-devchk.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
fails=0
pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1: $2"; fails=$((fails + 1)); }
skip() { echo "SKIP: $1: $2"; }

out=$("$VMC_REPO/scripts/build-qemu.sh") || { fail build-qemu "scripts/build-qemu.sh failed"; exit 1; }
QEMU=$(sed -n 's/^QEMU=//p' <<<"$out" | tail -1)
[ -x "$QEMU" ] || { fail build-qemu "no QEMU binary"; exit 1; }
command -v dtc >/dev/null || apt_ensure device-tree-compiler
FAKE="$VMC_REPO/tests/qemu/fake_vmcd.py"

MACHINE=(-M pseries,x-vof=on,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off
         -L /usr/share/qemu -vga none -nographic -nodefaults -m 1G)
MEMFD=(-object memory-backend-memfd,id=ram0,size=1G,share=on -machine memory-backend=ram0)
RAM_HINT='-object memory-backend-memfd,id=ram0,size=1G,share=on -machine memory-backend=ram0'

# start_backend NAME CMD...: start a back-end that listens on $work/NAME.sock; sets SOCK.
start_backend() {
    local name=$1 i; shift
    SOCK="$work/$name.sock"
    rm -f "$SOCK"
    "$@" --socket "$SOCK" >"$work/$name.backend.log" 2>&1 &
    PIDS+=($!)
    for i in $(seq 1 100); do [ -S "$SOCK" ] && return 0; sleep 0.05; done
    return 1
}

# run_qemu NAME SECONDS ARGS...: run QEMU (bounded), output in $work/NAME.out; sets RC.
run_qemu() {
    local name=$1 secs=$2; shift 2
    timeout --kill-after=5 "$secs" "$QEMU" "$@" </dev/null >"$work/$name.out" 2>&1
    RC=$?
}

# expect_failure NAME "fixed string" : QEMU must have exited non-zero (not by timeout) printing it.
expect_failure() {
    local name=$1 want=$2
    if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
        fail "$name" "QEMU hung (killed by timeout)"
    elif [ "$RC" -eq 0 ]; then
        fail "$name" "QEMU exited 0; expected a realize error"
    elif ! grep -qF -- "$want" "$work/$name.out"; then
        fail "$name" "message '$want' missing; got: $(head -c 400 "$work/$name.out" | tr '\n' ' ')"
    else
        pass "$name"
        grep -F -- "$want" "$work/$name.out" | head -1 | sed 's/^/    /' >&2
    fi
}

# --- properties ---------------------------------------------------------------------------
run_qemu help 20 -device spapr-vmc,help
missing=""
for p in chardev reg riobn connect-timeout; do
    grep -q "^ *$p=" "$work/help.out" || missing+=" $p"
done
if [ "$RC" -eq 0 ] && [ -z "$missing" ] && grep -q '^spapr-vmc options:' "$work/help.out"; then
    pass help-lists-properties
else
    fail help-lists-properties "rc $RC, missing:${missing:- none}; got: $(tr '\n' ' ' <"$work/help.out" | head -c 300)"
fi

# --- realize failures ---------------------------------------------------------------------
run_qemu no-chardev 30 "${MACHINE[@]}" "${MEMFD[@]}" -device spapr-vmc
expect_failure no-chardev "missing chardev: use -chardev socket"

run_qemu not-a-socket 30 "${MACHINE[@]}" "${MEMFD[@]}" -chardev null,id=vmc0 -device spapr-vmc,chardev=vmc0
expect_failure not-a-socket "chardev 'vmc0' must be a unix socket"

t0=$SECONDS
run_qemu vmcd-unreachable 40 "${MACHINE[@]}" "${MEMFD[@]}" \
    -chardev "socket,id=vmc0,path=$work/nobody.sock,reconnect=1" -device spapr-vmc,chardev=vmc0,connect-timeout=2
expect_failure vmcd-unreachable "vmcd is not reachable through chardev 'vmc0' (no connection within 2 s)"
[ $((SECONDS - t0)) -le 20 ] || fail vmcd-unreachable-bounded "took $((SECONDS - t0)) s"

start_backend refuse-version python3 "$FAKE" --mode refuse-version || fail refuse-version "fake back-end did not start"
run_qemu vmcd-refuses-version 40 "${MACHINE[@]}" "${MEMFD[@]}" \
    -chardev "socket,id=vmc0,path=$SOCK,reconnect=1" -device spapr-vmc,chardev=vmc0
expect_failure vmcd-refuses-version "vmcd refused vmc-user protocol version 1"

start_backend bad-version python3 "$FAKE" --mode bad-version || fail bad-version "fake back-end did not start"
run_qemu vmcd-replies-other-version 40 "${MACHINE[@]}" "${MEMFD[@]}" \
    -chardev "socket,id=vmc0,path=$SOCK" -device spapr-vmc,chardev=vmc0
expect_failure vmcd-replies-other-version "vmcd replied to GET_FEATURES with protocol version 2, this QEMU speaks version 1"

start_backend refuse-features python3 "$FAKE" --mode refuse-features || fail refuse-features "fake back-end did not start"
run_qemu vmcd-refuses-features 40 "${MACHINE[@]}" "${MEMFD[@]}" \
    -chardev "socket,id=vmc0,path=$SOCK,reconnect=1" -device spapr-vmc,chardev=vmc0
expect_failure vmcd-refuses-features "vmcd refused the features 0x0: Invalid argument"

start_backend ok python3 "$FAKE" --remote-window-size 0x2000000 || fail fake-start "fake back-end did not start"
OKSOCK=$SOCK
run_qemu ram-not-memfd 40 "${MACHINE[@]}" \
    -chardev "socket,id=vmc0,path=$OKSOCK,reconnect=1" -device spapr-vmc,chardev=vmc0
expect_failure ram-not-memfd "guest RAM must be a shareable memfd that vmcd can map, but 'ppc_spapr.ram' is not; use $RAM_HINT"

run_qemu ram-memfd-not-shared 40 "${MACHINE[@]}" -object memory-backend-memfd,id=ram0,size=1G,share=off \
    -machine memory-backend=ram0 -chardev "socket,id=vmc0,path=$OKSOCK,reconnect=1" -device spapr-vmc,chardev=vmc0
expect_failure ram-memfd-not-shared "guest RAM must be a shareable memfd that vmcd can map, but 'ram0' is not; use $RAM_HINT"

run_qemu second-device 40 "${MACHINE[@]}" "${MEMFD[@]}" \
    -chardev "socket,id=vmc0,path=$OKSOCK,reconnect=1" -device spapr-vmc,chardev=vmc0 \
    -chardev "socket,id=vmc1,path=$OKSOCK,reconnect=1" -device spapr-vmc,chardev=vmc1
expect_failure second-device "only one spapr-vmc device is supported per guest"

# --- device tree and negotiation ----------------------------------------------------------
# check_dt NAME DTB REMOTE-SIZE: the vmc node and both DMA windows.
check_dt() {
    local name=$1 dtb=$2 rsize=$3 dts node win
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
    local reg
    reg=$(sed -nE 's/.*reg = <(0x[0-9a-f]+)>;.*/\1/p' <<<"$node")
    if [ "${#c[@]}" -ne 10 ]; then fail "$name" "ibm,my-dma-window has ${#c[@]} cells, want 10 (two windows): $win"
    elif [ "${c[0]}" != "$reg" ]; then fail "$name" "local LIOBN ${c[0]} is not the device's ($reg)"
    elif [ "${c[5]}" = "${c[0]}" ]; then fail "$name" "remote LIOBN equals the local one"
    elif [ "$(printf '0x%x' $(( (c[3] << 32) | c[4] )))" != 0x10000000 ]; then fail "$name" "local window size wrong: $win"
    elif [ "$(printf '0x%x' $(( (c[8] << 32) | c[9] )))" != "$rsize" ]; then fail "$name" "remote window size not $rsize: $win"
    else pass "$name"; echo "    ${node//$'\n'/ }" | tr -s '\t ' ' ' >&2
    fi
}

run_qemu dt-fake 40 "${MACHINE[@]}" "${MEMFD[@]}" -machine dumpdtb="$work/fake.dtb" \
    -chardev "socket,id=vmc0,path=$OKSOCK,reconnect=1" -device spapr-vmc,chardev=vmc0
if [ "$RC" -ne 0 ]; then
    fail dt-node-fake-backend "QEMU failed: $(head -c 400 "$work/dt-fake.out")"
else
    check_dt dt-node-fake-backend "$work/fake.dtb" 0x2000000
fi
if grep -q 'request SET_CALL_FD flags 0x9 size 0 fds 1' "$work/ok.backend.log" \
    && grep -q 'region 0: gpa 0x0 size 0x40000000' "$work/ok.backend.log" \
    && grep -q 'request RESET' "$work/ok.backend.log"; then
    pass negotiation-fake-backend
else
    fail negotiation-fake-backend "back-end log lacks the memory table/call fd/reset: $(tr '\n' ' ' <"$work/ok.backend.log" | head -c 600)"
fi

run_qemu riobn 40 "${MACHINE[@]}" "${MEMFD[@]}" -machine dumpdtb="$work/riobn.dtb" \
    -chardev "socket,id=vmc0,path=$OKSOCK,reconnect=1" -device spapr-vmc,chardev=vmc0,riobn=0x12345678
# (dts captured first: "dtc | grep -q" under pipefail fails when grep exits before dtc is done)
riobn_dts=$(dtc -I dtb -O dts "$work/riobn.dtb" 2>/dev/null || true)
if [ "$RC" -eq 0 ] && grep -q 'ibm,my-dma-window = <0x[0-9a-f]* 0x00 0x00 0x00 0x10000000 0x12345678 ' <<<"$riobn_dts"; then
    pass riobn-property
else
    fail riobn-property "remote LIOBN 0x12345678 not in the device tree (rc $RC)"
fi

# --- real vmcd ----------------------------------------------------------------------------
VMCD="$VMC_REPO/src/Vmcd/bin/Release/net10.0/vmcd"
if ! timeout 600 dotnet build "$VMC_REPO/src/Vmcd/Vmcd.csproj" -c Release -nologo -v q >"$work/vmcd-build.log" 2>&1; then
    skip vmcd-negotiation "vmcd does not build yet"
elif ! start_backend vmcd "$VMCD" --max-mtu 4096 || ! kill -0 "${PIDS[-1]}" 2>/dev/null; then
    skip vmcd-negotiation "vmcd did not start: $(head -c 200 "$work/vmcd.backend.log" | tr '\n' ' ')"
else
    run_qemu dt-vmcd 60 "${MACHINE[@]}" "${MEMFD[@]}" -machine dumpdtb="$work/vmcd.dtb" \
        -chardev "socket,id=vmc0,path=$SOCK,reconnect=1" -device spapr-vmc,chardev=vmc0
    if [ "$RC" -ne 0 ]; then
        fail vmcd-negotiation "QEMU failed against vmcd: $(head -c 400 "$work/dt-vmcd.out" | tr '\n' ' ')"
    else
        pass vmcd-negotiation
        read -r -a w < <(dtc -I dtb -O dts "$work/vmcd.dtb" 2>/dev/null \
            | sed -nE 's/.*ibm,my-dma-window = <([^>]*)>;.*/\1/p')
        rsize=""
        [ "${#w[@]}" -eq 10 ] && rsize=$(printf '0x%x' $(( (w[8] << 32) | w[9] )))
        if [ -n "$rsize" ] && [ "$rsize" != 0x0 ]; then
            check_dt dt-node-vmcd "$work/vmcd.dtb" "$rsize"
        else
            fail dt-node-vmcd "no remote window from vmcd's configuration"
        fi
    fi
fi

# --- guest level (minimal Debian guest with the real ibmvmc driver) ------------------------
if [ "${VMC_SKIP_GUEST_CHECKS:-0}" = 1 ]; then
    skip guest-checks "VMC_SKIP_GUEST_CHECKS=1"
else
    "$VMC_REPO/tests/qemu/guest-checks.sh" || fails=$((fails + 1))
fi

[ "$fails" -eq 0 ]
