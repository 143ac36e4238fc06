#!/usr/bin/env bash
# Checks of the guest workbench itself: scripts/boot-test.sh must pass a copy of the stock driver,
# FAIL a copy with a deliberate write-after-free quoting the kernel's report, FAIL a copy that does
# not compile with the compiler's words and one clear line, report the known trap 3 as PASS once a
# copy has it fixed, and boot a kernel given with --kernel-image/--modules-dir.
#   tests/guest/workbench-checks.sh      WORKBENCH_KERNELS="6.1 6.12" (stock copies), WORKBENCH_KERNEL=6.12 (the rest)
# Prints "PASS: workbench/..." / "FAIL: workbench/...: why" and a closing count.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib/common.sh"
. "$VMC_REPO/scripts/lib/vm.sh"
. "$VMC_REPO/scripts/lib/results.sh"

work=$(mktemp -d /tmp/vmc-workbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
BT="$VMC_REPO/scripts/boot-test.sh"
one=${WORKBENCH_KERNEL:-6.12}
vm_tools                       # once, not in every boot-test.sh run below
export VMC_QEMU=$QEMU VMC_VMCD=$VMCD

# driver_copy KERNEL DIR: the kernel's stock ibmvmc.[ch] copied into DIR.
driver_copy() {
    vm_guest --kernel "$1" || return 1
    mkdir -p "$2" && cp "$DRIVER_SRC/ibmvmc.c" "$DRIVER_SRC/ibmvmc.h" "$2/"
}
# patch_copy FILE SED-SCRIPT: edit the copy; fails when the edit changed nothing.
patch_copy() {
    cp "$1" "$1.orig"; sed -i "$2" "$1"
    ! cmp -s "$1" "$1.orig"
}
# boot NAME ARGS...: run boot-test.sh, output in $work/NAME.out/.err; sets RC.
boot() {
    local name=$1; shift
    log "boot-test.sh $*"
    bash "$BT" "$@" >"$work/$name.out" 2>"$work/$name.err"
    RC=$?
}
fails_of() { grep '^FAIL: ' "$work/$1.out" | head -3 | tr '\n' ' '; }

# 1. an unmodified copy of each kernel's driver passes
for k in ${WORKBENCH_KERNELS:-6.1 6.12}; do
    if ! driver_copy "$k" "$work/stock-$k"; then result FAIL "workbench/$k/stock-driver-copy-passes" "$VM_GUEST_ERROR"; continue; fi
    boot "stock-$k" --kernel "$k" --driver-src "$work/stock-$k" basic
    if [ "$RC" -eq 0 ] && grep -q ' 0 failed' "$work/stock-$k.out" && grep -q "^PASS: $k/basic/echo-" "$work/stock-$k.out"; then
        result PASS "workbench/$k/stock-driver-copy-passes"
    else
        result FAIL "workbench/$k/stock-driver-copy-passes" "rc $RC: $(fails_of "stock-$k")"
    fi
done

# 2. a deliberate write-after-free in ibmvmc_open fails with the kernel's report
d="$work/uaf"
if driver_copy "$one" "$d" && patch_copy "$d/ibmvmc.c" '/^\tfile->private_data = session;$/a\
\t{\t/* workbench-checks: deliberate write-after-free */\
\t\tu8 *volatile p = kmalloc(32, GFP_KERNEL);\
\t\tif (p) { kfree(p); p[16] = 0; }\
\t}'; then
    boot uaf --kernel "$one" --driver-src "$d" basic
    line=$(grep "^FAIL: $one/basic/kernel-clean: " "$work/uaf.out" | head -1)
    if [ "$RC" -ne 0 ] && grep -qE "kernel-clean: (BUG |\[Poison overwritten\]|BUG: KFENCE)" <<<"$line"; then
        result PASS "workbench/$one/write-after-free-fails" "${line#FAIL: }"
    else
        result FAIL "workbench/$one/write-after-free-fails" "rc $RC, no kernel-clean FAIL quoting a slab/KFENCE report: ${line:-$(fails_of uaf)}"
    fi
else
    result FAIL "workbench/$one/write-after-free-fails" "could not make the patched copy"
fi

# 3. a copy that does not compile: the compiler's error verbatim and one clear FAIL line
d="$work/broken"
if driver_copy "$one" "$d" && patch_copy "$d/ibmvmc.c" '/^\tfile->private_data = session;$/a\
\tworkbench_broken(file);'; then
    boot broken --kernel "$one" --driver-src "$d" basic
    nfail=$(grep -c '^FAIL: ' "$work/broken.out")
    if [ "$RC" -ne 0 ] && [ "$nfail" -eq 1 ] && grep -q "^FAIL: $one/build/guest-image: building ibmvmc.ko from $d" "$work/broken.out" \
        && grep -qE 'ibmvmc\.c:[0-9]+:[0-9]+: error: .*workbench_broken' "$work/broken.err"; then
        result PASS "workbench/$one/compile-error-fails-clearly" "$(grep '^FAIL: ' "$work/broken.out" | cut -c1-160)"
    else
        result FAIL "workbench/$one/compile-error-fails-clearly" "rc $RC, $nfail FAIL lines: $(fails_of broken); compiler error shown: $(grep -cE 'error: ' "$work/broken.err")"
    fi
else
    result FAIL "workbench/$one/compile-error-fails-clearly" "could not make the patched copy"
fi

# 4. trap 3 fixed (close clears the HMC's pointer to the freed session): restart is clean, no XFAIL
d="$work/fixed"
if driver_copy "$one" "$d" && patch_copy "$d/ibmvmc.c" '/^\tkfree_sensitive(session);$/i\
\tif (hmc \&\& hmc->file_session == session)\
\t\thmc->file_session = NULL;'; then
    boot fixed --kernel "$one" --driver-src "$d" restart
    if [ "$RC" -eq 0 ] && grep -q "^PASS: $one/restart/kernel-clean" "$work/fixed.out" && grep -q ' 0 xfailed' "$work/fixed.out"; then
        result PASS "workbench/$one/trap3-fixed-driver-restart-clean"
    else
        result FAIL "workbench/$one/trap3-fixed-driver-restart-clean" "rc $RC: $(grep -E '^(FAIL|XFAIL): ' "$work/fixed.out" | head -2 | tr '\n' ' ')"
    fi
else
    result FAIL "workbench/$one/trap3-fixed-driver-restart-clean" "could not make the patched copy"
fi

# 5. --kernel-image with --modules-dir (here: Debian's vmlinux and the module built for it)
if vm_guest --kernel "$one"; then
    abi=$GUEST_ABI
    mkdir -p "$work/mods/lib/modules/$abi/extra"
    cp "$IBMVMC_KO" "$work/mods/lib/modules/$abi/extra/"
    boot image --kernel-image "$KERNEL" --modules-dir "$work/mods" basic
    # results are labelled with the image's own version string (e.g. 6.12.117+deb12-powerpc64le)
    if [ "$RC" -eq 0 ] && grep -q "^PASS: $abi[^/]*/basic/echo-" "$work/image.out" && grep -q ' 0 failed' "$work/image.out"; then
        result PASS "workbench/kernel-image-and-modules-dir"
    else
        result FAIL "workbench/kernel-image-and-modules-dir" "rc $RC: $(fails_of image)"
    fi
else
    result FAIL "workbench/kernel-image-and-modules-dir" "$VM_GUEST_ERROR"
fi

results_summary
[ "$R_FAIL" -eq 0 ]
