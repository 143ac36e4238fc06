# Starting vmcd and a pseries guest with the spapr-vmc device: the ONE place the QEMU command
# line is written and the ONE wait helper. Source after common.sh.
#   vm_prepare [build-guest options]    QEMU, VMCD and the guest (KERNEL, INITRD, GUEST_*)
#   vm_guest [build-guest options]      only the guest (e.g. the next kernel of a matrix)
#   vmcd_start SOCKET LOG [vmcd options] / qemu_start SOCKET APPEND LOG TIMEOUT [--reboot] ...
#                                       (with VM_REPORT_DIR set every vmcd is traced, see vmcd_start)
#   qmp SOCKET COMMAND...               QMP commands on a monitor socket
#   qemu_base_args / qemu_vmc_args / qemu_guest_args / qemu_args: pieces of the command line
#   wait_until / wait_for_socket / wait_for_line: poll a condition with a deadline
# shellcheck shell=bash

VM_PIDS=() VM_TRACE_PIDS=()
vm_cleanup() {
    local p
    for p in "${VM_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${VM_PIDS[@]}"; do
        wait_until 2 "" eval "! kill -0 $p 2>/dev/null" || kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    # report tracers end by themselves when their vmcd has gone (after writing what it sent)
    for p in "${VM_TRACE_PIDS[@]}"; do
        wait_until 5 "" eval "! kill -0 $p 2>/dev/null" || kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    VM_PIDS=() VM_TRACE_PIDS=()
    return 0
}

# last_value NAME OUTPUT: the last NAME=value line of a build script's output.
last_value() { sed -n "s/^$1=//p" <<<"$2" | tail -1; }

# vm_tools: build (or take from the cache) QEMU and vmcd: vm_qemu sets QEMU, vm_vmcd sets VMCD and
# VMCCTL. VMC_QEMU / VMC_VMCD (/ VMC_VMCCTL) name binaries to use instead (your own qemu-system-ppc64 with spapr-vmc, an
# installed vmcd).
vm_tools() { vm_qemu; vm_vmcd; }
vm_qemu() {
    local out
    if [ -n "${VMC_QEMU:-}" ]; then
        QEMU=$VMC_QEMU
    else
        out=$("$VMC_REPO/scripts/build-qemu.sh") || die "building QEMU failed (see above)"
        QEMU=$(last_value QEMU "$out")
    fi
    [ -x "$QEMU" ] || die "no usable QEMU binary '$QEMU' (from VMC_QEMU or scripts/build-qemu.sh)"
}
vm_vmcd() {
    local out
    if [ -n "${VMC_VMCD:-}" ]; then
        VMCD=$VMC_VMCD
    else
        out=$("$VMC_REPO/scripts/build-vmcd.sh") || die "building vmcd failed (see above)"
        VMCD=$(last_value VMCD "$out") VMCCTL=$(last_value VMCCTL "$out")
    fi
    # vmcctl (the control client) comes with vmcd: VMC_VMCCTL, else next to VMC_VMCD
    [ -z "${VMC_VMCD:-}" ] || VMCCTL=${VMC_VMCCTL:-$(dirname "$VMC_VMCD")/vmcctl}
    [ -x "$VMCD" ] || die "no usable vmcd binary '$VMCD' (from VMC_VMCD or scripts/build-vmcd.sh)"
}

# vm_guest [build-guest options]: build (or take from the cache) the guest image.
# Sets KERNEL, INITRD, GUEST_KERNEL (label), GUEST_ABI, GUEST_APPEND, DRIVER_SRC, IBMVMC_KO,
# GUEST_DRIVER ("stock", or "given DIR" with --driver-src DIR); on failure
# returns 1 with build-guest.sh's error line in VM_GUEST_ERROR (its whole output went to stderr).
vm_guest() {
    local out errf a prev=""
    GUEST_DRIVER=stock
    for a in "$@"; do [ "$prev" != --driver-src ] || GUEST_DRIVER="given $a"; prev=$a; done
    errf=$(mktemp /tmp/vmc-guest-err.XXXXXX)
    if ! out=$("$VMC_REPO/scripts/build-guest.sh" "$@" 2> >(tee "$errf" >&2)); then
        sleep 0.1   # let tee finish
        VM_GUEST_ERROR=$(sed -n 's/^error: //p' "$errf" | tail -1)
        VM_GUEST_ERROR=${VM_GUEST_ERROR:-"scripts/build-guest.sh $* failed (output above)"}
        rm -f "$errf"
        return 1
    fi
    rm -f "$errf"
    KERNEL=$(last_value KERNEL "$out"); INITRD=$(last_value INITRD "$out")
    GUEST_KERNEL=$(last_value GUEST_KERNEL "$out"); GUEST_ABI=$(last_value GUEST_ABI "$out")
    GUEST_APPEND=$(last_value GUEST_APPEND "$out"); DRIVER_SRC=$(last_value DRIVER_SRC "$out")
    IBMVMC_KO=$(last_value IBMVMC_KO "$out")
    [ -f "$KERNEL" ] && [ -f "$INITRD" ] || die "scripts/build-guest.sh did not produce its files"
}

# vm_prepare [build-guest options]: QEMU, vmcd and the guest image.
vm_prepare() {
    vm_tools
    vm_guest "$@" || die "building the guest image failed (see above)"
}

# wait_until SECONDS PID CMD...: run CMD every 0.1 s until it succeeds (0), PID (unless empty)
# has ended (2, after one last try) or SECONDS have passed (1).
wait_until() {
    local secs=$1 pid=$2 end; shift 2
    end=$(( $(date +%s%N) + secs * 1000000000 ))
    while :; do
        "$@" && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then "$@" && return 0; return 2; fi
        [ "$(date +%s%N)" -lt "$end" ] || return 1
        sleep 0.1
    done
}
# wait_for_socket SOCKET SECONDS [PID]: until SOCKET exists as a socket.
wait_for_socket() { wait_until "$2" "${3:-}" test -S "$1"; }
# wait_for_line LOG REGEX SECONDS [PID]: until LOG has a line matching the extended REGEX.
wait_for_line() { wait_until "$3" "${4:-}" grep -aqE "$2" "$1"; }
# count_lines LOG REGEX: how many lines of LOG match.
count_lines() { grep -acE "$2" "$1" 2>/dev/null || true; }

# vmcd_start SOCKET LOG [vmcd options...]: start vmcd, wait until it listens. Sets VMCD_PID.
# With VM_REPORT_DIR set, every vmcd is recorded for the conformance report: `vmcctl trace --write`
# on its control socket, ready before this returns, into VM_REPORT_DIR/vmcd-traces/STEM.N.vmctrace
# (STEM: the socket's name without .sock, e.g. 6.1-basic; N: 1, 2, ... per vmcd of that socket),
# with STEM.N.meta: kernel label, driver (GUEST_DRIVER), vmcd options. It ends with its vmcd.
vmcd_start() {
    local sock=$1 logf=$2; shift 2
    rm -f "$sock"
    "$VMCD" --socket "$sock" "$@" >>"$logf" 2>&1 &
    VMCD_PID=$!
    VM_PIDS+=("$VMCD_PID")
    if ! wait_for_socket "$sock" 10 "$VMCD_PID"; then
        cat "$logf" >&2
        die "vmcd did not start listening on $sock (log above: $logf)"
    fi
    [ -z "${VM_REPORT_DIR:-}" ] || vm_report_trace "$sock" "$@"
    return 0
}

# vm_report_trace SOCKET [vmcd options...]: the report's tracer of the vmcd just started (see
# vmcd_start). A tracer that cannot start is a warning: the report then says the trace is missing.
vm_report_trace() {
    local sock=$1 dir="$VM_REPORT_DIR/vmcd-traces" stem n=1 tlog; shift
    stem=$(basename "$sock" .sock)
    mkdir -p "$dir"
    while [ -e "$dir/$stem.$n.meta" ]; do n=$((n + 1)); done
    printf 'kernel\t%s\ndriver\t%s\nvmcd\t%s\n' "${GUEST_KERNEL:-?}" "${GUEST_DRIVER:-stock}" "$*" >"$dir/$stem.$n.meta"
    tlog="$dir/$stem.$n.vmcctl.log"
    wait_for_socket "$sock.ctl" 10 "$VMCD_PID" || { log "warning: no control socket $sock.ctl: $stem not traced for the report"; return 0; }
    vmcctl_trace "$sock" "$dir/$stem.$n.vmctrace" "$tlog"; local rc=$?
    VM_TRACE_PIDS+=("$TRACER_PID")
    [ "$rc" -eq 0 ] || log "warning: vmcctl trace for the report did not start: $(tr '\n' ' ' <"$tlog")"
    return 0
}

# vmcctl_trace SOCKET FILE LOG [trace options...]: `vmcctl trace --write FILE` on SOCKET's control
# socket (SOCKET.ctl) in the background (TRACER_PID), stderr to LOG; returns 0 once it is tracing,
# 1 if it did not start within 10 s (LOG says why).
vmcctl_trace() {
    local sock=$1 file=$2 tlog=$3; shift 3
    "$VMCCTL" --control "$sock.ctl" trace --write "$file" "$@" 2>"$tlog" &
    TRACER_PID=$!
    wait_for_line "$tlog" '^vmcctl: tracing every VM' 10 "$TRACER_PID"
}

# qemu_reconnect_opt: the chardev option that makes QEMU reconnect to vmcd every second
# (QEMU 9.2 replaced reconnect=SECONDS by reconnect-ms=MILLISECONDS; 10.0 removed the old one).
qemu_reconnect_opt() {
    if [ "${QEMU_RECONNECT_FOR:-}" != "$QEMU" ]; then
        local v maj min
        v=$("$QEMU" --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
        read -r maj min <<<"${v:-0 0}"
        if [ "$maj" -gt 9 ] || { [ "$maj" -eq 9 ] && [ "$min" -ge 2 ]; }; then
            QEMU_RECONNECT=reconnect-ms=1000
        else
            QEMU_RECONNECT=reconnect=1
        fi
        QEMU_RECONNECT_FOR=$QEMU
    fi
    echo "$QEMU_RECONNECT"
}

# qemu_base_args [memfd|memfd-unshared|plain]: the pseries machine (VOF firmware, no graphics,
# console on stdio) with 1 GiB of RAM; vmcd needs it as a shared memfd (the default). Sets QEMU_ARGS.
qemu_base_args() {
    QEMU_ARGS=(-M pseries,x-vof=on,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off
               -L /usr/share/qemu -vga none -nographic -m 1G)
    case "${1:-memfd}" in
        memfd) QEMU_ARGS+=(-object memory-backend-memfd,id=ram0,size=1G,share=on -machine memory-backend=ram0) ;;
        memfd-unshared) QEMU_ARGS+=(-object memory-backend-memfd,id=ram0,size=1G,share=off -machine memory-backend=ram0) ;;
        plain) ;;
        *) die "qemu_base_args: unknown RAM kind $1" ;;
    esac
}

# qemu_vmc_args [--id ID] [--props P] [--no-reconnect] SOCKET: append the chardev to vmcd and the
# spapr-vmc device to QEMU_ARGS.
qemu_vmc_args() {
    local id=vmc0 props="" reconnect
    reconnect=$(qemu_reconnect_opt)
    while [ $# -gt 1 ]; do
        case "$1" in
            --id) id=$2; shift ;;
            --props) props=,$2; shift ;;
            --no-reconnect) reconnect="" ;;
            *) die "qemu_vmc_args: unknown option $1" ;;
        esac
        shift
    done
    QEMU_ARGS+=(-chardev "socket,id=$id,path=$1${reconnect:+,$reconnect}" -device "spapr-vmc,chardev=$id$props")
}

# qemu_guest_args APPEND: append the test guest's kernel, initramfs and command line.
qemu_guest_args() {
    QEMU_ARGS+=(-kernel "$KERNEL" -initrd "$INITRD" -append "console=hvc0 ${GUEST_APPEND:-} $1")
}

# qemu_args SOCKET APPEND [--reboot]: the whole command line users need for spapr-vmc and the
# test guest (printed by run-vm.sh --print-cmdline). Without --reboot a guest reboot ends QEMU.
qemu_args() {
    qemu_base_args
    qemu_vmc_args "$1"
    qemu_guest_args "$2"
    [ "${3:-}" = --reboot ] || QEMU_ARGS+=(-no-reboot)
}

# qemu_start SOCKET APPEND LOG TIMEOUT [--reboot] [--stdin FILE] [QEMU-ARG...]: boot the guest in
# the background, console into LOG (input from FILE, default /dev/null), killed after TIMEOUT
# seconds; extra QEMU arguments go last (e.g. -qmp). Sets QEMU_PID.
qemu_start() {
    local sock=$1 append=$2 logf=$3 secs=$4 reboot="" input=/dev/null
    shift 4
    while [ $# -gt 0 ]; do
        case "$1" in
            --reboot) reboot=--reboot; shift ;;
            --stdin) input=$2; shift 2 ;;
            *) break ;;
        esac
    done
    qemu_args "$sock" "$append" "$reboot"
    QEMU_ARGS+=("$@")
    timeout --kill-after=5 "$secs" "$QEMU" "${QEMU_ARGS[@]}" <"$input" >"$logf" 2>&1 &
    QEMU_PID=$!
    VM_PIDS+=("$QEMU_PID")
}

# qmp SOCKET COMMAND...: run QMP commands on a monitor socket (a command name, or a whole JSON
# object); prints "<milliseconds for all of them> <last reply as JSON>". Fails when the monitor
# does not answer within 10 s.
qmp() {
    python3 - "$@" <<'PY'
import json, socket, sys, time
t0 = time.monotonic()
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ["qmp_capabilities"] + sys.argv[2:]:
    f.write((cmd if cmd.startswith("{") else json.dumps({"execute": cmd})) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            break
print(int((time.monotonic() - t0) * 1000), json.dumps(r))
PY
}
