#!/usr/bin/env bash
# The one place the pseries test guest is built: a ppc64le kernel, ibmvmc.ko, busybox-static and
# our guest programs (tests/guest) packed into an initramfs. Everything is cached under
# $VMC_CACHE/guest, each layer keyed by its inputs.
#
#   scripts/build-guest.sh [--kernel 6.1|6.12] [--driver-src DIR]
#   scripts/build-guest.sh --kernel-image FILE [--modules-dir DIR] [--driver-src DIR]
#
#   --kernel 6.1    Debian 12's newest linux-image-6.1.0-*-powerpc64le (default; GUEST_KERNEL)
#   --kernel 6.12   the newest linux-image-6.12.*+deb12-powerpc64le (bookworm-backports or
#                   bookworm-security), with its own headers and kbuild
#   --driver-src D  build ibmvmc.ko out of tree from D/ibmvmc.c and D/ibmvmc.h (e.g. your
#                   linux/drivers/misc) instead of the chosen kernel's own linux-source copy
#   --kernel-image F  boot your own ppc64le vmlinux; the driver is built in, or ibmvmc.ko is
#                   found under --modules-dir D (e.g. INSTALL_MOD_PATH of modules_install);
#                   with --driver-src it is built against D's kernel build tree (lib/modules/*/build)
#
# Downloads go through the private apt root (scripts/lib/apt.sh); /etc/apt is never touched.
# Stdout (last lines): KERNEL=, INITRD=, GUEST_KERNEL= (label), GUEST_ABI=, GUEST_APPEND= (kernel
# command line the guest needs: memory debugging), DRIVER_SRC= (the kernel's stock ibmvmc.[ch],
# a starting point for your own change; empty with --kernel-image), IBMVMC_KO= (the module packed).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

series=${GUEST_KERNEL:-6.1} driver_src="" kernel_image="" modules_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) series=${2:?--kernel needs 6.1 or 6.12}; shift ;;
        --driver-src) driver_src=${2:?--driver-src needs a directory}; shift ;;
        --kernel-image) kernel_image=${2:?--kernel-image needs a file}; shift ;;
        --modules-dir) modules_dir=${2:?--modules-dir needs a directory}; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) die "unknown option $1 (try --help)" ;;
    esac
    shift
done
case "$series" in 6.1|6.12) ;; *) die "--kernel $series: choose 6.1 or 6.12" ;; esac
if [ -n "$driver_src" ]; then
    [ -f "$driver_src/ibmvmc.c" ] && [ -f "$driver_src/ibmvmc.h" ] \
        || die "--driver-src $driver_src must hold ibmvmc.c and ibmvmc.h (like linux/drivers/misc)"
    driver_src=$(cd "$driver_src" && pwd)
fi
if [ -n "$kernel_image" ]; then
    [ -f "$kernel_image" ] || die "--kernel-image $kernel_image: no such file"
    kernel_image=$(cd "$(dirname "$kernel_image")" && pwd)/$(basename "$kernel_image")
fi
if [ -n "$modules_dir" ]; then
    [ -n "$kernel_image" ] || die "--modules-dir goes with --kernel-image"
    [ -d "$modules_dir" ] || die "--modules-dir $modules_dir: no such directory"
    modules_dir=$(cd "$modules_dir" && pwd)
fi

apt_ensure gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross cpio xz-utils make
. "$VMC_REPO/scripts/lib/apt.sh"
G="$VMC_CACHE/guest"
mkdir -p "$G"
exec 7>"$VMC_CACHE/guest.lock"
flock -w 1800 7 || die "timed out waiting for another build-guest.sh ($VMC_CACHE/guest.lock)"
papt_update

# kmake DIR HEADERS LOG: build the out-of-tree module(s) listed in DIR/Kbuild against HEADERS.
kmake() {
    # BTF for modules needs pahole and is of no use here (6.12 enables it).
    make -C "$2" M="$1" ARCH=powerpc CROSS_COMPILE=powerpc64le-linux-gnu- \
        CONFIG_DEBUG_INFO_BTF_MODULES= modules >"$3" 2>&1
}

# --- the kernel: Debian's (headers, kbuild, stock driver source) or the user's ---------------
# What the private lists resolve to is kept until they are next refreshed (apt-cache is slow).
case "$series" in
    6.1)  image_re='^linux-image-6\.1\.0-[0-9]+-powerpc64le$'; where="bookworm, bookworm-updates, bookworm-security (ppc64el)" ;;
    6.12) image_re='^linux-image-6\.12\.[0-9]+\+deb12-powerpc64le$'; where="bookworm-backports, bookworm-security (ppc64el)" ;;
esac
res="$G/resolved-$series"
if [ -z "$kernel_image" ] && [ -f "$res" ] && [ "$res" -nt "$PAPT_ROOT/updated" ] && grep -qxF "# $PAPT_ROOT" "$res"; then
    . "$res"
else
    busybox_ver=$(papt_candidate busybox-static:ppc64el "bookworm")
    image="" ver="" common="" kbuild="" srcver=""
    if [ -z "$kernel_image" ]; then
        image=$(papt_newest "$image_re" "$where")
        ver=$(papt_candidate "$image:ppc64el" "$where")
        deps=$(papt_field "${image/image/headers}:ppc64el=$ver" Depends)
        common=$(grep -oE 'linux-headers-[^ ,]+-common' <<<"$deps" | head -1)
        kbuild=$(grep -oE 'linux-kbuild-[^ ,]+' <<<"$deps" | head -1)
        [ -n "$common" ] && [ -n "$kbuild" ] || die "cannot tell ${image/image/headers}=$ver's common headers and kbuild from its Depends ('$deps')"
        srcver=$(papt_field "$image:ppc64el=$ver" Source | sed -n 's/.*(\(.*\)).*/\1/p')
        srcver=${srcver:-$ver}
        printf '# %s\n' "$PAPT_ROOT" >"$res.tmp"
        for v in busybox_ver image ver common kbuild srcver; do printf '%s=%q\n' "$v" "${!v}" >>"$res.tmp"; done
        mv "$res.tmp" "$res"
    fi
fi
papt_download "$VMC_CACHE/guest-debs/busybox" "bookworm (ppc64el)" "busybox-static:ppc64el=$busybox_ver"
busybox_deb=$(ls "$VMC_CACHE/guest-debs/busybox/busybox-static_${busybox_ver//:/%3a}_ppc64el.deb")
append="slub_debug=FZPU"
stock_src=""
if [ -z "$kernel_image" ]; then
    abi=${image#linux-image-}; abi=${abi%-powerpc64le}
    headers="linux-headers-$abi-powerpc64le"
    K="$G/kernel/$abi-$ver"
    if [ ! -f "$K/.done" ]; then
        t0=$SECONDS
        log "guest kernel $series: $image $ver (downloading kernel, headers, kbuild and linux-source-$series)"
        debs="$VMC_CACHE/guest-debs/$series"
        papt_download "$debs" "$where" "$image:ppc64el=$ver" "$headers:ppc64el=$ver" "$common=$ver" \
            "$kbuild=$ver" "linux-source-$series=$srcver"
        rm -rf "$K"; mkdir -p "$K/root" "$K/driver"
        for d in "$headers" "$common" "$kbuild"; do
            dpkg-deb -x "$(ls "$debs/${d}_${ver}"_*.deb)" "$K/root"
        done
        # Of the image only the kernel itself (the driver is not among Debian's modules).
        dpkg-deb --fsys-tarfile "$(ls "$debs/${image}_${ver}"_*.deb)" | tar -x -C "$K/root" ./boot
        # The flavour Makefile includes the common headers by absolute path: point it into our copy.
        sed -i "s|^include /usr/src/|include $K/root/usr/src/|" "$K/root/usr/src/$headers/Makefile"
        log "extracting drivers/misc/ibmvmc.[ch] from linux-source-$series $srcver"
        dpkg-deb --fsys-tarfile "$(ls "$debs/linux-source-${series}_${srcver}"_all.deb)" \
            | tar -xO --wildcards "*/linux-source-$series.tar.xz" \
            | tar -xJ -C "$K/driver" --strip-components=3 --wildcards '*/drivers/misc/ibmvmc.[ch]'
        [ -f "$K/driver/ibmvmc.c" ] || die "linux-source-$series $srcver has no drivers/misc/ibmvmc.c"
        printf '%s\n' "$image=$ver" "$common=$ver" "$kbuild=$ver" "linux-source-$series=$srcver" >"$K/PACKAGES"
        touch "$K/.done"
        log "guest kernel $series unpacked in $((SECONDS - t0)) s"
    fi
    hdr="$K/root/usr/src/$headers"
    vmlinux="$K/root/boot/vmlinux-$abi-powerpc64le"
    stock_src="$K/driver"
    label=$series
    grep -q '^CONFIG_KFENCE=y' "$hdr/.config" && append="$append kfence.sample_interval=10"
else
    vmlinux=$kernel_image
    abi=$(grep -aoE -m1 "Linux version [^ ]+" "$vmlinux" | head -1 | cut -d" " -f3)
    [ -n "$abi" ] || die "--kernel-image $vmlinux: no 'Linux version' string inside; pass an uncompressed vmlinux"
    label=$abi
    hdr=""
    if [ -n "$modules_dir" ]; then
        b=$(find -L "$modules_dir" -maxdepth 4 -name build -type d 2>/dev/null | head -1)
        [ -n "$b" ] && [ -f "$b/Makefile" ] && hdr=$b
    fi
    [ -z "$driver_src" ] || [ -n "$hdr" ] \
        || die "--driver-src with --kernel-image needs the kernel's build tree: pass --modules-dir with lib/modules/<version>/build in it (make modules_install INSTALL_MOD_PATH=DIR)"
fi

# --- ibmvmc.ko ------------------------------------------------------------------------------
ko=""
if [ -n "$driver_src" ] || [ -z "$kernel_image" ]; then
    src=${driver_src:-$stock_src}
    # Keyed by the driver source and the kernel it is built for (a rebuilt user kernel at the
    # same path gets a new module).
    mkey=$(printf '%s\n' "$hdr" "$(hash_inputs "$src/ibmvmc.c" "$src/ibmvmc.h" $kernel_image)" | sha256sum | cut -c1-16)
    M="$G/modules/ibmvmc-$abi-$mkey"
    if [ ! -f "$M/ibmvmc.ko" ]; then
        log "building ibmvmc.ko from $src against $abi"
        rm -rf "$M.tmp"; mkdir -p "$M.tmp"
        cp "$src/ibmvmc.c" "$src/ibmvmc.h" "$M.tmp/"
        echo 'obj-m := ibmvmc.o' >"$M.tmp/Kbuild"
        if ! kmake "$M.tmp" "$hdr" "$M.tmp/build.log"; then
            # The compiler's own words, then one line saying what failed.
            grep -vE '^make(\[[0-9]+\])?: (Entering|Leaving) directory' "$M.tmp/build.log" >&2
            die "building ibmvmc.ko from $src against $abi failed (compiler output above)"
        fi
        rm -rf "$M"; mv "$M.tmp" "$M"
    fi
    ko="$M/ibmvmc.ko"
elif [ -n "$modules_dir" ]; then
    ko=$(find -L "$modules_dir" -name 'ibmvmc.ko*' -type f | head -1)
    [ -n "$ko" ] || log "no ibmvmc.ko under $modules_dir: the guest expects the driver built into $vmlinux"
fi

# vmcprobe.ko (raw VMC hypercalls: tests/qemu/guest-checks.sh and the hostile boot scenario), Debian kernels only.
probe=""
if [ -n "$hdr" ] && [ -z "$kernel_image" ]; then
    pkey=$(printf '%s\n' "$hdr" "$(hash_inputs "$VMC_REPO/tests/guest/vmcprobe.c")" | sha256sum | cut -c1-16)
    P="$G/modules/vmcprobe-$abi-$pkey"
    if [ ! -f "$P/vmcprobe.ko" ]; then
        log "building vmcprobe.ko against $abi"
        rm -rf "$P.tmp"; mkdir -p "$P.tmp"
        cp "$VMC_REPO/tests/guest/vmcprobe.c" "$P.tmp/"
        echo 'obj-m := vmcprobe.o' >"$P.tmp/Kbuild"
        kmake "$P.tmp" "$hdr" "$P.tmp/build.log" || { cat "$P.tmp/build.log" >&2; die "building tests/guest/vmcprobe.c failed"; }
        rm -rf "$P"; mv "$P.tmp" "$P"
    fi
    probe="$P/vmcprobe.ko"
fi

# --- vmctest (static ppc64le) ----------------------------------------------------------------
tkey=$(hash_inputs "$VMC_REPO/tests/guest/vmctest.c")
T="$G/vmctest-$tkey"
if [ ! -x "$T" ]; then
    log "building vmctest (static, ppc64le)"
    powerpc64le-linux-gnu-gcc -static -O2 -Wall -Wextra -Werror -o "$T.tmp" "$VMC_REPO/tests/guest/vmctest.c" \
        || die "building tests/guest/vmctest.c failed (compiler output above)"
    mv "$T.tmp" "$T"
fi

# --- initramfs ---------------------------------------------------------------------------------
ikey=$(printf '%s\n' "$(hash_inputs $ko $probe "$T" "$VMC_REPO/tests/guest/init")" "$busybox_deb" | sha256sum | cut -c1-16)
I="$G/initrd/$ikey.gz"
if [ ! -f "$I" ]; then
    log "packing the initramfs"
    work=$(mktemp -d /tmp/vmc-guest.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    ird="$work/initramfs"
    mkdir -p "$ird"/{bin,sbin,proc,sys,dev,tmp,lib/modules} "$work/bb"
    dpkg-deb -x "$busybox_deb" "$work/bb"
    cp "$work/bb/bin/busybox" "$ird/bin/busybox"
    for a in sh mount insmod rmmod poweroff reboot cat grep dmesg sleep ls echo uname tr sed tee od head cut; do
        ln -sf busybox "$ird/bin/$a"
    done
    case "$ko" in
        "") ;;
        *.xz) xz -dc "$ko" >"$ird/lib/modules/ibmvmc.ko" ;;
        *.zst) zstd -qdc "$ko" >"$ird/lib/modules/ibmvmc.ko" ;;
        *.gz) gzip -dc "$ko" >"$ird/lib/modules/ibmvmc.ko" ;;
        *) cp "$ko" "$ird/lib/modules/ibmvmc.ko" ;;
    esac
    [ -z "$probe" ] || cp "$probe" "$ird/lib/modules/"
    cp "$T" "$ird/bin/vmctest"
    cp "$VMC_REPO/tests/guest/init" "$ird/init"
    chmod +x "$ird/init"
    mkdir -p "$G/initrd"
    (cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9n) >"$I.tmp"
    mv "$I.tmp" "$I"
fi
log "guest image ready (kernel $label, $abi${driver_src:+, driver from $driver_src})"
echo "KERNEL=$vmlinux"
echo "INITRD=$I"
echo "GUEST_KERNEL=$label"
echo "GUEST_ABI=$abi"
echo "GUEST_APPEND=$append"
echo "DRIVER_SRC=$stock_src"
echo "IBMVMC_KO=$ko"
