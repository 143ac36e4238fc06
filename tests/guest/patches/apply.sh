#!/usr/bin/env bash
# Makes a patched copy of the ibmvmc driver for scripts/boot-test.sh --driver-src:
#   tests/guest/patches/apply.sh SRC-DIR OUT-DIR
# SRC-DIR holds a kernel's stock ibmvmc.c and ibmvmc.h (build-guest.sh prints it as DRIVER_SRC=;
# or linux/drivers/misc). OUT-DIR gets the two files with every patch of this directory applied
# in order, then those of 6.1/ (backports of changes later kernels already have) unless the
# source already has them. Prints one line per patch and fails on one that applies to neither.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 2 ] || { sed -n '2,7p' "$0" >&2; exit 2; }
src=$1 out=$2
[ -f "$src/ibmvmc.c" ] && [ -f "$src/ibmvmc.h" ] || { echo "error: $src has no ibmvmc.c and ibmvmc.h" >&2; exit 1; }
tree=$(mktemp -d /tmp/vmc-patch.XXXXXX)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/drivers/misc"
cp "$src/ibmvmc.c" "$src/ibmvmc.h" "$tree/drivers/misc/"
for p in "$here"/[0-9]*.patch "$here"/6.1/[0-9]*.patch; do
    [ -f "$p" ] || continue
    name=${p#"$here"/}
    if [ "${name%%/*}" = 6.1 ] && patch -d "$tree" -p1 -R --dry-run -s -f -F0 <"$p" >/dev/null 2>&1; then
        echo "already in the source: $name"
    elif patch -d "$tree" -p1 --dry-run -s -f -F0 <"$p" >/dev/null 2>&1; then
        patch -d "$tree" -p1 -s -f -F0 --no-backup-if-mismatch <"$p"
        echo "applied $name"
    else
        echo "error: $name applies to neither this source nor reverse (which kernel is $src?)" >&2
        exit 1
    fi
done
mkdir -p "$out"
cp "$tree/drivers/misc/ibmvmc.c" "$tree/drivers/misc/ibmvmc.h" "$out/"
echo "patched driver in $out"
