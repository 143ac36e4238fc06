#!/usr/bin/env bash
# Guest-level checks of QEMU's spapr-vmc device with a minimal, self-contained guest: Debian's
# ppc64le kernel, busybox and the upstream ibmvmc.ko cross-built from linux-source-6.1 (all cached
# under $VMC_CACHE/qemu-guest-check), and a tiny /init that prints the device-tree node, loads
# the driver and queries it (VMC_IOCTL_QUERY / VMC_IOCTL_REQUESTVMC).
#   - fake back-end (tests/qemu/fake_vmcd.py): node + both DMA windows, driver reaches "ready"
#   - vmcd (if it builds): driver reaches "ready", H_REQUEST_VMC returns vmcd's DRC index, an
#     HMC session opens and echoes through the command router (H_COPY_RDMA both ways)
#   - vmcd killed and restarted mid-run: the guest gets the transport event QEMU writes, the
#     device reconnects (REG_CRQ with RECONNECT), vmcd re-inits and the driver is ready again
#   - guest reboot (system reset): the driver probes again and reaches ready again
# Prints "PASS: name" / "FAIL: name: why" / "SKIP: name: why"; exits non-zero on failure.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib/common.sh"

fails=0
pass() { echo "PASS: guest/$1"; }
fail() { echo "FAIL: guest/$1: $2"; fails=$((fails + 1)); }
skip() { echo "SKIP: guest/$1: $2"; }
work=$(mktemp -d /tmp/vmc-guestchk.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

out=$("$VMC_REPO/scripts/build-qemu.sh") || { fail build-qemu "scripts/build-qemu.sh failed"; exit 1; }
QEMU=$(sed -n 's/^QEMU=//p' <<<"$out" | tail -1)

# --- the minimal guest (cached) -------------------------------------------------------------
G="$VMC_CACHE/qemu-guest-check"
build_guest() (
    set -euo pipefail
    mkdir -p "$G/debs"
    # Downloads go through the private apt root (scripts/lib/apt.sh); the host's apt is untouched.
    . "$VMC_REPO/scripts/lib/apt.sh"
    papt_update
    apt_ensure gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross cpio xz-utils make
    local img abi ver p
    img=$(papt_cache search --names-only '^linux-image-6\.1\.0-[0-9]+-powerpc64le$' | awk '{print $1}' | sort -V | tail -1)
    [ -n "$img" ] || { echo "no ppc64le kernel package found" >&2; exit 1; }
    abi=${img#linux-image-}; abi=${abi%-powerpc64le}
    ver=$(papt_cache show "$img:ppc64el" | sed -n 's/^Version: //p' | sort -V | tail -1)
    papt_download "$G/debs" "$img:ppc64el=$ver" "linux-headers-$abi-powerpc64le:ppc64el=$ver" \
        "linux-headers-$abi-common=$ver" "linux-kbuild-6.1=$ver" linux-source-6.1 busybox-static:ppc64el
    cd "$G/debs"
    rm -rf "$G/root" "$G/mod" "$G/initrd"; mkdir -p "$G/root" "$G/mod" "$G/initrd/bin" "$G/initrd/proc" "$G/initrd/sys" "$G/initrd/dev"
    for p in *.deb; do case $p in linux-source-*) ;; *) dpkg-deb -x "$p" "$G/root" ;; esac; done
    dpkg-deb --fsys-tarfile linux-source-6.1_*.deb | tar -x -O --wildcards '*/linux-source-6.1.tar.xz' \
        | tar -xJ -C "$G/mod" --strip-components=3 --wildcards '*/drivers/misc/ibmvmc.[ch]'
    local hdr="$G/root/usr/src/linux-headers-$abi-powerpc64le"
    sed -i "s|^include /usr/src/|include $G/root/usr/src/|" "$hdr/Makefile"
    # vmcprobe.ko: raw VMC hypercalls whose answers QEMU itself decides (tests/qemu/vmcprobe.c)
    cp "$VMC_REPO/tests/qemu/vmcprobe.c" "$G/mod/"
    echo 'obj-m := ibmvmc.o vmcprobe.o' >"$G/mod/Kbuild"
    make -C "$hdr" M="$G/mod" ARCH=powerpc CROSS_COMPILE=powerpc64le-linux-gnu- modules >"$G/mod/build.log" 2>&1 \
        || { tail -20 "$G/mod/build.log" >&2; exit 1; }
    cp "$G/root/bin/busybox" "$G/initrd/bin/busybox"
    cp "$G/mod/ibmvmc.ko" "$G/mod/vmcprobe.ko" "$G/initrd/"
    cat >"$G/vmcq.c" <<'EOF'
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/ioctl.h>
struct q { int have_vmc, state, drc; };
#define VMC_BASE 0xCC
#define VMC_IOCTL_SETHMCID _IOW(VMC_BASE, 0x00, unsigned char *)
#define VMC_IOCTL_QUERY _IOR(VMC_BASE, 0x01, struct q)
#define VMC_IOCTL_REQUESTVMC _IOR(VMC_BASE, 0x02, uint32_t)
/* HMC command-router message: 32-byte big-endian header, then data */
static int msg(uint8_t *b, uint16_t opcode, uint32_t token, const char *data)
{
    uint32_t dl = strlen(data), ml = 32 + dl;
    memset(b, 0, 32);
    b[0] = 0xDE; b[1] = 0xCA; b[2] = 0xFF; b[3] = 32;
    b[4] = ml >> 24; b[5] = ml >> 16; b[6] = ml >> 8; b[7] = ml;
    b[8] = token >> 24; b[9] = token >> 16; b[10] = token >> 8; b[11] = token;
    b[12] = 0x80; b[13] = 0x00; b[15] = 0x80;
    b[16] = dl >> 24; b[17] = dl >> 16; b[18] = dl >> 8; b[19] = dl;
    b[20] = opcode >> 8; b[21] = opcode;
    memcpy(b + 32, data, dl);
    return ml;
}
/* write (retrying while the session opens), read the response; 0 if it is a good response */
static int call(int fd, const char *tag, uint16_t opcode, const char *data)
{
    uint8_t req[4096], rsp[4096];
    int n = msg(req, opcode, 0x1234 + opcode, data), i, w = -1, r;
    for (i = 0; i < 100; i++) {
        w = write(fd, req, n);
        if (w >= 0 || (errno != EBUSY && errno != EIO)) break;
        usleep(50000);
    }
    if (w != n) { printf("CHK %s FAIL write rc=%d errno=%d\n", tag, w, errno); return 1; }
    r = read(fd, rsp, sizeof(rsp) > 4096 ? 4096 : sizeof(rsp));
    if (r < 32) { printf("CHK %s FAIL read rc=%d errno=%d\n", tag, r, errno); return 1; }
    if (!(rsp[15] & 0x40) || rsp[22] || rsp[23] || r != n || memcmp(rsp + 32, data, strlen(data))) {
        printf("CHK %s FAIL response len=%d flags=0x%x rc=0x%02x%02x\n", tag, r, rsp[15], rsp[22], rsp[23]);
        return 1;
    }
    printf("CHK %s OK len=%d\n", tag, r);
    return 0;
}
int main(int argc, char **argv)
{
    int fd = open("/dev/ibmvmc", O_RDWR), r;
    struct q q = {0};
    uint32_t d = 0;
    unsigned char id[32] = "spapr-vmc-guest-check";
    if (fd < 0) { perror("open /dev/ibmvmc"); return 1; }
    r = ioctl(fd, VMC_IOCTL_QUERY, &q);
    printf("CHK %s QUERY rc=%d have_vmc=%d state=%d\n", argv[1], r, q.have_vmc, q.state);
    r = ioctl(fd, VMC_IOCTL_REQUESTVMC, &d);
    printf("CHK %s REQUESTVMC rc=%d drc=0x%x\n", argv[1], r, d);
    if (argc > 2) {     /* an HMC session: H_COPY_RDMA both ways */
        r = ioctl(fd, VMC_IOCTL_SETHMCID, id);
        printf("CHK %s SETHMCID rc=%d errno=%d\n", argv[1], r, r ? errno : 0);
        if (r == 0 && call(fd, "session-open", 0x0001, "") == 0)
            call(fd, "session-echo", 0x0103, "hello through spapr-vmc and H_COPY_RDMA");
    }
    close(fd);
    return 0;
}
EOF
    powerpc64le-linux-gnu-gcc -static -O2 -o "$G/initrd/vmcq" "$G/vmcq.c"
    cat >"$G/initrd/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for n in /proc/device-tree/vdevice/vmc@*; do
    echo "CHK NODE $n compatible=$(cat $n/compatible) device_type=$(cat $n/device_type)"
    echo "CHK WINDOW $(od -An -v -tx1 $n/ibm,my-dma-window | tr -d ' \n')"
done
if [ -n "${PROBE:-}" ]; then     # raw hypercalls instead of the driver: PROBE=nobackend|backend
    n=$(ls -d /proc/device-tree/vdevice/vmc@* | head -1)
    set -- $(od -An -v -tx1 $n/ibm,my-dma-window | tr -d ' \n' | sed 's/^\(........\).\{32\}\(........\).*/\1 \2/')
    insmod /vmcprobe.ko mode=$PROBE liobn=0x$1 riobn=0x$2 2>/dev/null
    dmesg | grep VMCPROBE | sed 's/^.*VMCPROBE/CHK PROBE/'
    sleep 3     # time for QEMU to reconnect to a back-end it lost
    echo "CHK DONE"
    poweroff -f
fi
insmod /ibmvmc.ko
if [ "${WATCH:-0}" = 1 ]; then  # the host starts, stops and restarts the back-end meanwhile
    i=0; while [ $i -lt 600 ]; do
        /vmcq w; dmesg -c | grep -a ibmvmc | sed 's/^/CHK DMESG /'; sleep 0.2; i=$((i+1))
    done
    poweroff -f
fi
i=0; while [ $i -lt 50 ] && ! dmesg | grep -q 'Capabilities:'; do sleep 0.2; i=$((i+1)); done
/vmcq first
[ "${SESSION:-0}" = 1 ] && /vmcq session rdma
echo "CHK WAITING"
if [ "${RESTART:-0}" = 1 ]; then
    i=0; while [ $i -lt 150 ] && [ "$(dmesg | grep -c 'Capabilities:')" -lt 2 ]; do sleep 0.2; i=$((i+1)); done
    dmesg | grep ibmvmc | sed 's/^/CHK DMESG /'
    /vmcq second
fi
echo "CHK DONE"
[ "${REBOOT:-0}" = 1 ] && reboot -f
poweroff -f
EOF
    chmod +x "$G/initrd/init"
    (cd "$G/initrd" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$G/initrd.gz")
    cp "$G/root/boot/vmlinux-$abi-powerpc64le" "$G/vmlinux"
    echo "$STAMP" >"$G/.done"
)
STAMP=$(hash_inputs "$VMC_REPO/tests/qemu/guest-checks.sh" "$VMC_REPO/tests/qemu/vmcprobe.c")
if [ "$(cat "$G/.done" 2>/dev/null)" != "$STAMP" ]; then
    log "building the minimal check guest (Debian ppc64le kernel, busybox, ibmvmc.ko)"
    if ! build_guest >"$work/guest-build.log" 2>&1; then
        fail build "minimal guest: $(tail -5 "$work/guest-build.log" | tr '\n' ' ')"
        exit 1
    fi
fi

# boot NAME SOCKET APPEND [QEMU ARGS...]: start the guest in the background; sets QPID, console
# in $work/NAME.log
boot() {
    local name=$1 sock=$2 append=$3; shift 3
    timeout --kill-after=5 180 "$QEMU" \
        -M pseries,x-vof=on,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off \
        -L /usr/share/qemu -vga none -nographic -no-reboot -m 1G \
        -object memory-backend-memfd,id=ram0,size=1G,share=on -machine memory-backend=ram0 \
        -chardev "socket,id=vmc0,path=$sock,reconnect-ms=1000" -device spapr-vmc,chardev=vmc0 \
        -kernel "$G/vmlinux" -initrd "$G/initrd.gz" -append "console=hvc0 quiet $append" "$@" \
        </dev/null >"$work/$name.log" 2>&1 &
    QPID=$!; PIDS+=("$QPID")
}
# backend NAME CMD...: start a back-end listening on $work/NAME.sock; sets SOCK, BPID
backend() {
    local name=$1 i; shift
    SOCK="$work/$name.sock"; rm -f "$SOCK"
    "$@" --socket "$SOCK" >>"$work/$name.backend.log" 2>&1 &
    BPID=$!; PIDS+=("$BPID")
    for i in $(seq 1 100); do [ -S "$SOCK" ] && return 0; sleep 0.05; done
    return 1
}
# ready LOG TAG: the driver was in state ready (3) at that query
ready() { grep -aq "CHK $2 QUERY rc=0 have_vmc=1 state=3" "$1"; }

# wait_for LOG SECONDS EXTENDED-REGEX [MIN-COUNT]: poll until LOG has MIN-COUNT (1) matching lines
wait_for() {
    local end=$((SECONDS + $2)) n=${4:-1}
    while [ "$SECONDS" -lt "$end" ]; do
        [ "$(grep -aEc -- "$3" "$1" 2>/dev/null)" -ge "$n" ] && return 0
        kill -0 "$QPID" 2>/dev/null || break
        sleep 0.1
    done
    [ "$(grep -aEc -- "$3" "$1" 2>/dev/null)" -ge "$n" ]
}
# qmp_status SOCKET: one QMP query-status; prints "<milliseconds> <status>"
qmp_status() {
    python3 - "$1" <<'PY'
import json, socket, sys, time
t0 = time.monotonic()
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ("qmp_capabilities", "query-status"):
    f.write(json.dumps({"execute": cmd}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            break
print(int((time.monotonic() - t0) * 1000), r.get("return", {}).get("status", "error"))
PY
}
# probe_checks NAME LOG "check rc"...: the VMCPROBE lines the guest printed
probe_checks() {
    local name=$1 log=$2 pr ok=1 got; shift 2
    for pr in "$@"; do
        set -- $pr
        got=$(grep -a "CHK PROBE $1 " "$log" | tr -d '\r' | awk '{print $4}')
        [ "$got" = "$2" ] || { ok=0; fail "$name/$1" "want $2, got '${got:-nothing}'"; }
    done
    [ "$ok" = 1 ] && pass "$name"
}
# QEMU rejects these H_COPY_RDMA arguments itself (H_PARAMETER -4, H_SOURCE_PARM -13, H_DEST_PARM -14)
ARG_CHECKS=("bad-liobn -4" "both-local -4" "both-remote -4" "src-outside-window -13" "src-unmapped -13"
            "dst-unmapped -14" "src-not-readable -13" "dst-not-writable -14" "src-runs-into-unreadable -13")

# --- fake back-end: device tree and driver state ---------------------------------------------
backend fake python3 "$VMC_REPO/tests/qemu/fake_vmcd.py" --remote-window-size 0x2000000 --drc-index 0x81000007
boot fake "$SOCK" ""
wait "$QPID"
L="$work/fake.log"
node=$(grep -a 'CHK NODE' "$L" | tr -d '\r')
win=$(sed -n 's/.*CHK WINDOW \([0-9a-f]*\).*/\1/p' "$L" | tr -d '\r')
if grep -q 'compatible=IBM,vmc device_type=ibm,vmc' <<<"$node" && [[ "$node" == *"/proc/device-tree/vdevice/vmc@"* ]]; then
    pass dt-node-compatible; echo "    $node" >&2
else
    fail dt-node-compatible "guest saw: ${node:-no vmc node} ($(tail -3 "$L" | tr '\n' ' '))"
fi
# 10 cells: liobn, 0, 0, 0, 0x10000000, riobn, 0, 0, 0, 0x02000000 (remote-window-size default)
if [ "${#win}" -eq 80 ] && [ "${win:0:8}" != "${win:40:8}" ] && [ "${win:8:32}" = "00000000000000000000000010000000" ] \
    && [ "${win:48:32}" = "00000000000000000000000002000000" ]; then
    pass dt-two-dma-windows; echo "    ibm,my-dma-window = $win" >&2
else
    fail dt-two-dma-windows "ibm,my-dma-window = '${win}'"
fi
if ready "$L" first; then pass fake-driver-ready; else fail fake-driver-ready "$(grep -a 'CHK\|ibmvmc' "$L" | tail -5 | tr '\n' ' ')"; fi
if grep -aq 'CHK first REQUESTVMC rc=0 drc=0x81000007' "$L"; then pass fake-request-vmc-drc
else fail fake-request-vmc-drc "$(grep -a 'REQUESTVMC' "$L" | head -1)"; fi
kill "$BPID" 2>/dev/null; wait "$BPID" 2>/dev/null

# --- raw hypercalls without a back-end (vmc-user section 4) ----------------------------------
boot probe-nobackend "$work/nobody.sock" "PROBE=nobackend"
wait "$QPID"
probe_checks hcalls-without-backend "$work/probe-nobackend.log" "${ARG_CHECKS[@]}" \
    "nb-reg-crq 0" "nb-send-crq 2" "nb-send-crq-bad 2" "nb-copy-rdma -1" "nb-request-vmc -1" \
    "nb-free-crq 0" "nb-send-crq-no-queue 2" "done 0"

# --- raw hypercalls with the fake back-end: ring, slot, RDMA through guest RAM ----------------
backend probe python3 "$VMC_REPO/tests/qemu/fake_vmcd.py" --drc-index 0x81000009
boot probe-backend "$SOCK" "PROBE=backend"
wait "$QPID"
probe_checks hcalls-with-backend "$work/probe-backend.log" "${ARG_CHECKS[@]}" \
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
kill "$BPID" 2>/dev/null; wait "$BPID" 2>/dev/null

# --- back-ends that break the protocol once the guest has a queue: QEMU declares them lost,
# says why, gives the guest its transport event and reconnects --------------------------------
for case in "channel-failed|the back-end failed the channel (reason 2): fake-vmcd was told to fail" \
            "bad-oq|the back-end's output ring holds 5000 entries (it has 1024)" \
            "ignore-sq|the back-end consumed no submission for 1000 ms"; do
    mode=${case%%|*}; want=${case#*|}
    backend "$mode" python3 "$VMC_REPO/tests/qemu/fake_vmcd.py" --mode "$mode"
    boot "lost-$mode" "$SOCK" "PROBE=backend"
    wait "$QPID"
    if ! grep -aqF "spapr-vmc: $want" "$work/lost-$mode.log"; then
        fail "backend-lost-$mode" "QEMU did not say '$want': $(grep -a 'spapr-vmc' "$work/lost-$mode.log" | head -3 | tr '\n' ' ')"
    elif ! grep -aq 'CHK PROBE done 0' "$work/lost-$mode.log"; then
        fail "backend-lost-$mode" "the guest did not finish its hypercalls: $(tail -3 "$work/lost-$mode.log" | tr '\n' ' ')"
    elif ! grep -q '^fake-vmcd: connection 2$' "$work/$mode.backend.log"; then
        fail "backend-lost-$mode" "QEMU did not reconnect"
    else
        pass "backend-lost-$mode"
    fi
    kill "$BPID" 2>/dev/null; wait "$BPID" 2>/dev/null
done
# the ignored submission (the guest's init) costs the back-end the connection; the transport
# event lands in the guest's queue where the init response would have been
grep -aq 'CHK PROBE be-send-crq-init 0' "$work/lost-ignore-sq.log" \
    && grep -aq "CHK PROBE be-queue-slot0 $((0xFF02))" "$work/lost-ignore-sq.log" \
    && pass backend-lost-ignore-sq-guest-sees-event \
    || fail backend-lost-ignore-sq-guest-sees-event "$(grep -a 'be-send-crq-init\|be-init-response' "$work/lost-ignore-sq.log" | tr '\n' ' ')"

# --- lifecycle: guest before back-end, back-end stopped (never freeze), resumed, restarted ----
QMP="$work/qmp.sock"
L="$work/lifecycle.log"
SOCK="$work/life.sock"; rm -f "$SOCK"
boot lifecycle "$SOCK" "WATCH=1" -qmp "unix:$QMP,server=on,wait=off"
if ! wait_for "$L" 60 'CHK w QUERY rc=0 have_vmc=[01] state=[0-9]'; then
    fail lifecycle "the guest did not start: $(tail -5 "$L" | tr '\n' ' ')"
else
    sleep 1     # a few queries with no back-end at all
    if grep -aq 'CHK w QUERY rc=0 have_vmc=1 state=3' "$L"; then
        fail guest-before-backend "driver ready with no back-end"
    fi
    backend life python3 "$VMC_REPO/tests/qemu/fake_vmcd.py" --drc-index 0x8100000a
    if wait_for "$L" 20 'CHK w REQUESTVMC rc=0 drc=0x8100000a'; then
        pass guest-before-backend-then-ready
    else
        fail guest-before-backend-then-ready "$(grep -a 'CHK' "$L" | tail -4 | tr '\n' ' ')"
    fi
    # stall: SIGSTOP the back-end while the guest keeps asking it (H_REQUEST_VMC every 0.2 s)
    base=$(grep -ac 'virtual adapter failed' "$L")
    kill -STOP "$BPID"; t0=$(date +%s%N)
    (wait_for "$L" 10 'virtual adapter failed' $((base + 1)) && date +%s%N >"$work/event.time") &
    watcher=$!
    worst=0; status=""
    for i in 1 2 3 4; do
        read -r ms st < <(qmp_status "$QMP" 2>/dev/null || echo "99999 none")
        [ "$ms" -gt "$worst" ] && worst=$ms
        status+="$st "
        sleep 0.3
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
        if [ "$t" -le 2500 ]; then pass stalled-backend-transport-event; else fail stalled-backend-transport-event "after $t ms"; fi
        echo "    transport event in the guest $t ms after SIGSTOP" >&2
    else
        fail stalled-backend-transport-event "no transport event in the guest: $(grep -a 'CHK' "$L" | tail -4 | tr '\n' ' ')"
    fi
    kill -CONT "$BPID"
    n=$(grep -ac 'CHK w REQUESTVMC rc=0' "$L")
    if wait_for "$L" 20 'CHK w REQUESTVMC rc=0 drc=0x8100000a' $((n + 1)) \
        && [ "$(grep -c 'slot REG_CRQ entries [0-9]* flags 0x1' "$work/life.backend.log")" -ge 2 ]; then
        pass stalled-backend-resumed-reconnects
    else
        fail stalled-backend-resumed-reconnects "$(grep -a 'CHK' "$L" | tail -3 | tr '\n' ' '); back-end: $(tail -3 "$work/life.backend.log" | tr '\n' ' ')"
    fi
    # restart: a new back-end process on the same socket
    base=$(grep -ac 'virtual adapter failed' "$L")
    kill -9 "$BPID"; wait "$BPID" 2>/dev/null
    backend life python3 "$VMC_REPO/tests/qemu/fake_vmcd.py" --drc-index 0x8100000b
    if wait_for "$L" 10 'virtual adapter failed' $((base + 1)) && wait_for "$L" 20 'CHK w REQUESTVMC rc=0 drc=0x8100000b'; then
        pass restarted-backend-transport-event-and-ready
    else
        fail restarted-backend-transport-event-and-ready "$(grep -a 'CHK' "$L" | tail -4 | tr '\n' ' ')"
    fi
    if grep -aE 'spapr-vmc|qemu-system' "$L" \
        | grep -aEqv 'spapr-vmc: (the back-end|connected to)|Unable to connect character device vmc0'; then
        fail lifecycle-qemu-messages "unexpected QEMU output: $(grep -aE 'spapr-vmc|qemu-system' "$L" | head -5 | tr '\n' ' ')"
    fi
fi
kill "$QPID" 2>/dev/null; wait "$QPID" 2>/dev/null
kill "$BPID" 2>/dev/null; wait "$BPID" 2>/dev/null

# --- vmcd -----------------------------------------------------------------------------------
# vmcd speaks vmc-user version 1 until the "transport" work lands version 2; the lead sets
# VMC_VMCD_V2=1 (or removes this switch) at the merge.
# VMC_VMCD=<binary> tests that vmcd instead of building this clone's.
VMCD=${VMC_VMCD:-$VMC_REPO/src/Vmcd/bin/Release/net10.0/vmcd}
if [ "${VMC_VMCD_V2:-0}" != 1 ]; then
    skip vmcd-driver-ready "vmcd still speaks vmc-user v1 (set VMC_VMCD_V2=1 once it speaks v2)"
    skip vmcd-hmc-session-rdma-both-ways "vmcd still speaks vmc-user v1 (set VMC_VMCD_V2=1 once it speaks v2)"
    skip vmcd-restart-transport-event-and-reconnect "vmcd still speaks vmc-user v1 (set VMC_VMCD_V2=1 once it speaks v2)"
elif { [ -z "${VMC_VMCD:-}" ] && ! timeout 600 dotnet build "$VMC_REPO/src/Vmcd/Vmcd.csproj" -c Release -nologo -v q >"$work/vmcd-build.log" 2>&1; } \
    || ! backend vmcd "$VMCD" --drc-index 0x81000011; then
    fail vmcd-driver-ready "vmcd does not build or start: $(tail -3 "$work/vmcd-build.log" "$work/vmcd.backend.log" 2>/dev/null | tr '\n' ' ')"
else
    boot vmcd "$SOCK" "RESTART=1 SESSION=1"
    L="$work/vmcd.log"
    for i in $(seq 1 300); do grep -aq 'CHK WAITING' "$L" && break; kill -0 "$QPID" 2>/dev/null || break; sleep 0.2; done
    if ready "$L" first && grep -aq 'CHK first REQUESTVMC rc=0 drc=0x81000011' "$L"; then pass vmcd-driver-ready
    else fail vmcd-driver-ready "$(grep -a 'CHK\|ibmvmc\|spapr-vmc' "$L" | tail -5 | tr '\n' ' ')"; fi
    if grep -aq 'CHK session-open OK' "$L" && grep -aq 'CHK session-echo OK' "$L"; then
        pass vmcd-hmc-session-rdma-both-ways
    else
        fail vmcd-hmc-session-rdma-both-ways "$(grep -a 'CHK session\|CHK .*SETHMCID\|ibmvmc' "$L" | tail -5 | tr '\n' ' ')"
    fi
    kill -9 "$BPID"; wait "$BPID" 2>/dev/null
    backend vmcd "$VMCD" --drc-index 0x81000012 || true
    wait "$QPID"
    if grep -aq 'CRQ recv: virtual adapter failed - resetting' "$L" && ready "$L" second \
        && grep -aq 'CHK second REQUESTVMC rc=0 drc=0x81000012' "$L" \
        && grep -q 'spapr-vmc: connected to the back-end' "$L"; then
        pass vmcd-restart-transport-event-and-reconnect
    else
        fail vmcd-restart-transport-event-and-reconnect "$(grep -a 'CHK\|spapr-vmc' "$L" | tail -8 | tr '\n' ' ')"
    fi
fi

# --- system reset: the guest reboots; the device frees the queue and sends RESET, the driver
# probes again and reaches ready again (the harness stops QEMU after the second boot) ---------
if backend reset python3 "$VMC_REPO/tests/qemu/fake_vmcd.py"; then
    L="$work/reset.log"
    # -no-reboot is not wanted here: the guest's reboot is the system reset under test
    timeout --kill-after=5 150 "$QEMU" \
        -M pseries,x-vof=on,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off \
        -L /usr/share/qemu -vga none -nographic -m 1G \
        -object memory-backend-memfd,id=ram0,size=1G,share=on -machine memory-backend=ram0 \
        -chardev "socket,id=vmc0,path=$SOCK,reconnect-ms=1000" -device spapr-vmc,chardev=vmc0 \
        -kernel "$G/vmlinux" -initrd "$G/initrd.gz" -append "console=hvc0 quiet REBOOT=1" \
        </dev/null >"$L" 2>&1 &
    QPID=$!; PIDS+=("$QPID")
    wait_for "$L" 100 'CHK first QUERY rc=0 have_vmc=1 state=3' 2
    kill "$QPID" 2>/dev/null; wait "$QPID" 2>/dev/null
    if [ "$(grep -ac 'CHK first QUERY rc=0 have_vmc=1 state=3' "$L")" -ge 2 ] \
        && grep -q 'RESET: the queue and everything for it dropped' "$work/reset.backend.log"; then
        pass system-reset-driver-ready-again
    else
        fail system-reset-driver-ready-again "$(grep -a 'CHK\|ibmvmc\|spapr-vmc' "$L" | tail -6 | tr '\n' ' '); back-end: $(grep -c RESET "$work/reset.backend.log") RESET"
    fi
else
    fail system-reset-driver-ready-again "the fake back-end did not start"
fi

[ "$fails" -eq 0 ]
