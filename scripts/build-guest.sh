#!/usr/bin/env bash
# Builds the pseries guest from Debian packages: the newest powerpc64le kernel in the archive,
# ibmvmc.ko cross-built out of tree from linux-source-6.1 (taken at build time, never committed),
# busybox-static, and our static guest test program (tests/guest) packed into an initramfs.
# Cached outside the clone, keyed by its inputs. Stdout: KERNEL=, INITRD=, GUEST_ABI= lines.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

# ppc64el packages come from bookworm main only (the security index for ppc64el has failed to download).
if ! dpkg --print-foreign-architectures | grep -qx ppc64el; then
    log "adding the ppc64el architecture to apt"
    with_apt_lock dpkg --add-architecture ppc64el
    if grep -q 'debian-security' /etc/apt/sources.list.d/debian.sources && ! grep -q '^Architectures:' /etc/apt/sources.list.d/debian.sources; then
        with_apt_lock python3 - <<'PY'
import re
p='/etc/apt/sources.list.d/debian.sources'
stanzas=open(p).read().split('\n\n')
stanzas=[s+'\nArchitectures: amd64' if 'debian-security' in s and 'Architectures:' not in s else s for s in stanzas]
open(p,'w').write('\n\n'.join(stanzas))
PY
    fi
    with_apt_lock apt-get -o DPkg::Lock::Timeout=600 update -qq || die "apt-get update failed after adding ppc64el"
    apt_updated=1
fi
apt_ensure gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross cpio xz-utils

abi=$(apt-cache search --names-only '^linux-image-[0-9.]+-[0-9]+-powerpc64le$' 2>/dev/null \
      | awk '{print $1}' | sed 's/^linux-image-//; s/-powerpc64le$//' | sort -V | tail -1)
debs="$VMC_CACHE/guest-debs"
mkdir -p "$debs"
if [ -z "$abi" ]; then
    abi=$(ls "$debs" 2>/dev/null | sed -n 's/^linux-image-\(.*\)-powerpc64le_.*/\1/p' | sort -V | tail -1)
    [ -n "$abi" ] || die "no linux-image-*-powerpc64le in the archive or the cache: run apt-get update (ppc64el must be enabled)"
    log "archive lookup failed; using the cached kernel ABI $abi"
else
    log "newest powerpc64le kernel ABI in the archive: $abi"
fi
kver=$(apt-cache policy "linux-image-$abi-powerpc64le:ppc64el" 2>/dev/null | sed -n 's/^  Candidate: //p')
key=$(printf '%s\n' "$abi" "$kver" "$(hash_inputs "$VMC_REPO/tests/guest" "$0")" | sha256sum | cut -c1-16)
out="$VMC_CACHE/guest/$abi-$key"
if [ -f "$out/initrd.gz" ]; then
    echo "KERNEL=$out/vmlinux"; echo "INITRD=$out/initrd.gz"; echo "GUEST_ABI=$abi"
    exit 0
fi

log "downloading kernel, headers, kbuild, linux-source and busybox .debs"
(cd "$debs" && for p in "linux-image-$abi-powerpc64le:ppc64el" "linux-headers-$abi-powerpc64le:ppc64el" \
        "linux-headers-$abi-common" "linux-kbuild-6.1" "linux-source-6.1" "busybox-static:ppc64el"; do
    name=${p%%:*}
    ls "${name}"_*.deb >/dev/null 2>&1 || apt-get download -qq "$p" >/dev/null 2>&1 || die "apt-get download $p failed"
done)

work=$(mktemp -d /tmp/vmc-guest.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/root"
for d in "$debs"/linux-image-"$abi"-powerpc64le_*.deb "$debs"/linux-headers-"$abi"*.deb "$debs"/linux-kbuild-6.1_*.deb "$debs"/busybox-static_*.deb; do
    dpkg-deb -x "$d" "$root"
done
hdr="$root/usr/src/linux-headers-$abi-powerpc64le"
# The flavour Makefile includes the common headers by absolute path: point it into our tree.
sed -i "s|/usr/src/|$root/usr/src/|g" "$hdr/Makefile"
# Make the kbuild host tools (fixdep, modpost) reachable where the headers expect them.
for link in "$hdr/scripts" "$hdr/tools"; do [ -L "$link" ] && ln -sfn "$root$(readlink "$link" | sed 's|^\.\./\.\./lib|/usr/lib|')" "$link" || true; done

log "extracting drivers/misc/ibmvmc.[ch] from linux-source-6.1"
dpkg-deb --fsys-tarfile "$debs"/linux-source-6.1_*.deb | tar -x -C "$work" --wildcards '*/linux-source-6.1.tar.xz'
mkdir -p "$work/ibmvmc"
tar -xJf "$work"/usr/src/linux-source-6.1.tar.xz -C "$work/ibmvmc" --strip-components=3 --wildcards '*/drivers/misc/ibmvmc.c' '*/drivers/misc/ibmvmc.h'
echo 'obj-m := ibmvmc.o' >"$work/ibmvmc/Kbuild"
log "building ibmvmc.ko out of tree"
make -s -C "$hdr" M="$work/ibmvmc" ARCH=powerpc CROSS_COMPILE=powerpc64le-linux-gnu- modules >"$work/kbuild.log" 2>&1 \
    || { tail -30 "$work/kbuild.log" >&2; die "building ibmvmc.ko failed"; }

log "building vmctest (static, ppc64le)"
powerpc64le-linux-gnu-gcc -static -O2 -Wall -Wextra -o "$work/vmctest" "$VMC_REPO/tests/guest/vmctest.c" \
    || die "building tests/guest/vmctest.c failed"

log "packing the initramfs"
ird="$work/initramfs"
mkdir -p "$ird"/{bin,sbin,proc,sys,dev,tmp,lib/modules}
cp "$root/bin/busybox" "$ird/bin/busybox"
for a in sh mount insmod rmmod poweroff cat grep dmesg sleep ls echo uname tr sed tee; do ln -sf busybox "$ird/bin/$a"; done
cp "$work/ibmvmc/ibmvmc.ko" "$ird/lib/modules/"
cp "$work/vmctest" "$ird/bin/vmctest"
cp "$VMC_REPO/tests/guest/init" "$ird/init"
chmod +x "$ird/init"
mkdir -p "$out.tmp"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -9) >"$out.tmp/initrd.gz"
cp "$root/boot/vmlinux-$abi-powerpc64le" "$out.tmp/vmlinux"
rm -rf "$out" && mv "$out.tmp" "$out"
log "guest image ready ($abi)"
echo "KERNEL=$out/vmlinux"; echo "INITRD=$out/initrd.gz"; echo "GUEST_ABI=$abi"
