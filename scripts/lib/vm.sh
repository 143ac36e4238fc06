# Starting vmcd and a pseries guest with the spapr-vmc device. Source after common.sh.
# shellcheck shell=bash

VM_PIDS=()
vm_cleanup() {
    local p
    for p in "${VM_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.2
    for p in "${VM_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    VM_PIDS=()
    return 0
}

# vm_prepare: build (or take from the cache) QEMU, the guest image and vmcd.
# Sets QEMU, KERNEL, INITRD, GUEST_ABI, VMCD.
vm_prepare() {
    local out
    out=$("$VMC_REPO/scripts/build-qemu.sh") || die "building QEMU failed (see above)"
    QEMU=$(sed -n 's/^QEMU=//p' <<<"$out" | tail -1)
    out=$("$VMC_REPO/scripts/build-guest.sh") || die "building the guest image failed (see above)"
    KERNEL=$(sed -n 's/^KERNEL=//p' <<<"$out" | tail -1)
    INITRD=$(sed -n 's/^INITRD=//p' <<<"$out" | tail -1)
    GUEST_ABI=$(sed -n 's/^GUEST_ABI=//p' <<<"$out" | tail -1)
    [ -x "$QEMU" ] && [ -f "$KERNEL" ] && [ -f "$INITRD" ] || die "QEMU/guest build did not produce its files"
    out=$("$VMC_REPO/scripts/build-vmcd.sh") || die "building vmcd failed (see above)"
    VMCD=$(sed -n 's/^VMCD=//p' <<<"$out" | tail -1)
}

# vmcd_start SOCKET LOG [vmcd options...]: start vmcd, wait until it listens. Sets VMCD_PID.
vmcd_start() {
    local sock=$1 logf=$2; shift 2
    rm -f "$sock"
    "$VMCD" --socket "$sock" "$@" >>"$logf" 2>&1 &
    VMCD_PID=$!
    VM_PIDS+=("$VMCD_PID")
    local i
    for i in $(seq 1 100); do
        [ -S "$sock" ] && return 0
        kill -0 "$VMCD_PID" 2>/dev/null || { cat "$logf" >&2; die "vmcd exited at start"; }
        sleep 0.05
    done
    die "vmcd did not create $sock within 5 s"
}

# The QEMU command line users need for spapr-vmc (printed by run-vm.sh too).
# qemu_args SOCKET APPEND
qemu_args() {
    local sock=$1 append=$2
    QEMU_ARGS=(
        -M pseries,x-vof=on,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off
        -L /usr/share/qemu -vga none -nographic -no-reboot
        -m 1G -object memory-backend-memfd,id=ram0,size=1G,share=on -machine memory-backend=ram0
        -chardev "socket,id=vmc0,path=$sock,reconnect=1" -device spapr-vmc,chardev=vmc0
        -kernel "$KERNEL" -initrd "$INITRD" -append "console=hvc0 $append"
    )
}

# qemu_start SOCKET APPEND LOG TIMEOUT: boot the guest in the background, console into LOG.
qemu_start() {
    qemu_args "$1" "$2"
    timeout --kill-after=5 "$4" "$QEMU" "${QEMU_ARGS[@]}" </dev/null >"$3" 2>&1 &
    QEMU_PID=$!
    VM_PIDS+=("$QEMU_PID")
}

# wait_for_line LOG REGEX SECONDS PID: wait until LOG has a line matching REGEX (0) or PID ends / time runs out (1).
wait_for_line() {
    local logf=$1 re=$2 secs=$3 pid=$4 end=$((SECONDS + $3))
    while [ $SECONDS -lt $end ]; do
        grep -qE "$re" "$logf" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { grep -qE "$re" "$logf" 2>/dev/null; return; }
        sleep 0.2
    done
    return 1
}
