#!/usr/bin/env bash
# Build qemu-system-ppc64 (pseries only, lean) from Debian's QEMU source with qemu-patches/ applied.
#
#   scripts/build-qemu.sh          -> last stdout line: QEMU=<path to qemu-system-ppc64>
#
# Cache layout (outside the clone, under $VMC_CACHE):
#   qemu/src/<debver>/pristine/      unpacked `apt-get source qemu` (Debian quilt patches applied)
#   qemu/build/<debver>/src/         persistent build tree: pristine + our patches, synced by
#                                    content so that only files a patch change touches get a new
#                                    mtime; ninja then rebuilds just those (build dir: src/build)
#   qemu/<debver>-<hash>/            installed result, keyed by the patch series + this script
# A cache hit costs well under a second; cold (download + configure + build, deps installed) took
# 596 s on 2 busy cores (fetch 10 s, configure 21 s, ninja 1190 steps); a patch change recompiles
# only the files it touches.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

PATCH_DIR="$VMC_REPO/qemu-patches"
JOBS=${QEMU_BUILD_JOBS:-$(nproc)}
[ "$JOBS" -gt 2 ] || JOBS=2

# --- Debian source version, through the private apt root (host /etc/apt is never touched) ----
. "$VMC_REPO/scripts/lib/apt.sh"
papt_update
QEMU_SERIES=${QEMU_SERIES:-7.2}
DEBVER=$(papt_cache showsrc qemu 2>/dev/null | sed -n 's/^Version: //p' | grep -E "^1:${QEMU_SERIES//./\\.}[.+]" | sort -V | tail -1)
[ -n "$DEBVER" ] || die "no qemu $QEMU_SERIES source package in Debian ($PAPT_SUITES_SRC; private apt root $PAPT_ROOT, see $PAPT_ROOT/update.log)"
VERKEY=${DEBVER//:/_}

HASH=$(hash_inputs "$PATCH_DIR" "$VMC_REPO/scripts/build-qemu.sh")
OUT="$VMC_CACHE/qemu/$VERKEY-$HASH"
BIN="$OUT/qemu-system-ppc64"

# Firmware (SLOF, VOF) comes from Debian: the dfsg source has no blobs. -L /usr/share/qemu
apt_ensure qemu-system-data

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
    log "QEMU cache hit: $OUT"
    echo "QEMU=$BIN"
    exit 0
fi

exec 9>"$VMC_CACHE/qemu.lock"
flock -w 3600 9 || die "timed out waiting for another build-qemu.sh"
if [ -x "$BIN" ]; then echo "QEMU=$BIN"; exit 0; fi   # built meanwhile by someone else

t0=$SECONDS
apt_ensure dpkg-dev meson ninja-build pkg-config python3 build-essential \
    libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev rsync patch

# --- pristine source (per Debian version) -----------------------------------------------------
SRC_ROOT="$VMC_CACHE/qemu/src/$VERKEY"
PRISTINE="$SRC_ROOT/pristine"
if [ ! -f "$SRC_ROOT/.done" ]; then
    log "fetching qemu $DEBVER source (apt-get source)"
    rm -rf "$SRC_ROOT"; mkdir -p "$SRC_ROOT/dl"
    papt_source "$SRC_ROOT/dl" "qemu=$DEBVER"
    d=$(find "$SRC_ROOT/dl" -mindepth 1 -maxdepth 1 -type d -name 'qemu-*' | head -1)
    [ -n "$d" ] && [ -f "$d/VERSION" ] || die "apt-get source did not unpack a qemu tree"
    mv "$d" "$PRISTINE"
    rm -rf "$SRC_ROOT/dl"
    touch "$SRC_ROOT/.done"
fi

# --- patched copy ---------------------------------------------------------------------------
STAGE=$(mktemp -d "$VMC_CACHE/qemu/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
cp -a "$PRISTINE" "$STAGE/src"
if [ -f "$PATCH_DIR/series" ]; then
    while read -r p _; do
        case "$p" in ''|'#'*) continue ;; esac
        log "applying $p"
        patch -d "$STAGE/src" -p1 -s -N --no-backup-if-mismatch <"$PATCH_DIR/$p" >&2 \
            || die "patch $p does not apply to qemu $DEBVER"
    done <"$PATCH_DIR/series"
fi

# --- persistent build tree: sync by content so only changed files get new mtimes --------------
BTREE="$VMC_CACHE/qemu/build/$VERKEY/src"
mkdir -p "$BTREE"
DEVMAK=configs/devices/ppc64-softmmu/vmc.mak
rsync -rlc --delete --exclude=/build/ --exclude="/$DEVMAK" "$STAGE/src/" "$BTREE/"
rm -rf "$STAGE"; trap - EXIT

# Lean device set; only rewritten when it changes, so ninja does not reconfigure needlessly.
devices='# qemu-system-ppc64 -M pseries only (spapr-vmc is built with CONFIG_PSERIES)
CONFIG_PSERIES=y
CONFIG_SPAPR_VMC=y
CONFIG_USB=y
CONFIG_NVDIMM=y'
[ "$(cat "$BTREE/$DEVMAK" 2>/dev/null)" = "$devices" ] || printf '%s\n' "$devices" >"$BTREE/$DEVMAK"

cd "$BTREE"
if [ ! -f build/build.ninja ]; then
    log "configuring (ppc64-softmmu, lean)"
    rm -rf build
    ./configure --target-list=ppc64-softmmu --without-default-features --without-default-devices \
        --with-devices-ppc64=vmc --enable-fdt=system --disable-docs \
        --disable-werror --disable-tools --disable-guest-agent --disable-user \
        >"$BTREE/../configure.log" 2>&1 \
        || { tail -40 "$BTREE/../configure.log" >&2; die "configure failed (log: $BTREE/../configure.log)"; }
fi
log "building qemu-system-ppc64 (ninja -j$JOBS; cold ~5-10 min)"
cd build
ninja -j"$JOBS" qemu-system-ppc64 >"$BTREE/../ninja.log" 2>&1 &
npid=$!
tick=0
while kill -0 "$npid" 2>/dev/null; do
    sleep 1; tick=$((tick + 1))
    [ $((tick % 15)) -eq 0 ] && kill -0 "$npid" 2>/dev/null \
        && log "  $(grep -oE '^\[[0-9]+/[0-9]+\]' "$BTREE/../ninja.log" | tail -1)"
done
wait "$npid" || { grep -B2 -A20 -m3 -E 'error|FAILED' "$BTREE/../ninja.log" >&2 || tail -40 "$BTREE/../ninja.log" >&2
    die "build failed (log: $BTREE/../ninja.log)"; }

mkdir -p "$OUT.tmp"
cp qemu-system-ppc64 "$OUT.tmp/"
printf 'debian-source=%s\npatch-hash=%s\n' "$DEBVER" "$HASH" >"$OUT.tmp/BUILDINFO"
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
log "built $BIN in $((SECONDS - t0)) s"
echo "QEMU=$BIN"
