#!/usr/bin/env bash
# Build qemu-system-ppc64 (pseries only, lean) from Debian 13's QEMU 10.0 source with
# qemu-patches/ applied.
#
#   scripts/build-qemu.sh [--qemu 10.0]   -> last stdout line: QEMU=<path to qemu-system-ppc64>
#
# QEMU 10.0 is the only series (7.2 was dropped: Debian 12's distro QEMU cannot carry the device
# anyway, and users run 8.2-10.x). The source comes through the private apt root (scripts/lib/
# apt.sh; trixie deb-src). QEMU 10 needs meson >= 1.5: bookworm-backports' meson .deb is unpacked
# into the cache and put on PATH/PYTHONPATH for configure and ninja (never installed).
#
# Cache layout (outside the clone, under $VMC_CACHE):
#   tools/meson-<ver>/               unpacked meson .deb (dpkg-deb -x)
#   qemu/src/<debver>/pristine/      unpacked `apt-get source qemu` (Debian quilt series applied)
#   qemu/build/<debver>/src/         persistent build tree: pristine + our patches; a patch
#                                    change copies only the files whose content changed, so ninja
#                                    rebuilds just what they touch (build dir: src/build)
#   qemu/<debver>-<hash>/            installed result, keyed by the patch series + this script
# Measured on 2 cores shared with other builds (load 10-25): cold = source fetch 17 s, meson
# unpack 9 s, configure 78 s, ninja 1263 steps 994 s; a change to one .c file of the series
# rebuilds in 14 s (ninja 3 steps, 10 s); a cache hit takes ~2 s.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

SERIES=10.0
while [ $# -gt 0 ]; do
    case "$1" in
        --qemu) [ $# -ge 2 ] || die "--qemu needs a value (10.0)"; SERIES=$2; shift 2 ;;
        --qemu=*) SERIES=${1#--qemu=}; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (usage: scripts/build-qemu.sh [--qemu 10.0])" ;;
    esac
done
[ "$SERIES" = 10.0 ] || die "QEMU $SERIES is not supported: qemu-patches/ target Debian's QEMU 10.0 only (7.2 was dropped)"

PATCH_DIR="$VMC_REPO/qemu-patches"
JOBS=${QEMU_BUILD_JOBS:-$(nproc)}
[ "$JOBS" -gt 2 ] || JOBS=2

# --- Debian source version, through the private apt root (host /etc/apt is never touched) ----
. "$VMC_REPO/scripts/lib/apt.sh"
papt_update
# Newest 1:10.0.x+ds source that is not a backport (the bookworm-backports .dsc answered 404).
DEBVER=$(papt_cache showsrc qemu 2>/dev/null | sed -n 's/^Version: //p' | grep -E '^1:10\.0\.[0-9]+\+' \
    | grep -v '~bpo' | sort -V | tail -1)
[ -n "$DEBVER" ] || die "no qemu 10.0 source package in Debian ($PAPT_SUITES_SRC; private apt root $PAPT_ROOT, see $PAPT_ROOT/update.log, or delete $PAPT_ROOT/updated to refresh)"
VERKEY=${DEBVER//:/_}

HASH=$(hash_inputs "$PATCH_DIR" "$VMC_REPO/scripts/build-qemu.sh")
OUT="$VMC_CACHE/qemu/$VERKEY-$HASH"
BIN="$OUT/qemu-system-ppc64"

# Firmware (SLOF, VOF) comes from Debian 12's qemu-system-data: the +ds source has no blobs.
# Run with -L /usr/share/qemu.
apt_ensure qemu-system-data

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
    log "QEMU cache hit: $OUT"
    echo "QEMU=$BIN"
    exit 0
fi

mkdir -p "$VMC_CACHE/qemu"
exec 9>"$VMC_CACHE/qemu/$VERKEY.lock"
flock -w 3600 9 || die "timed out waiting for another build-qemu.sh building $DEBVER"
if [ -x "$BIN" ]; then echo "QEMU=$BIN"; exit 0; fi   # built meanwhile by someone else

t0=$SECONDS
apt_ensure dpkg-dev ninja-build pkg-config python3 python3-venv build-essential \
    libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev rsync patch

# --- meson >= 1.5 from bookworm-backports, unpacked (not installed) ----------------------------
# An unpacked meson >= 1.5 is reused; otherwise the newest one the private apt root offers.
# (none unpacked yet on a fresh machine: the glob matches nothing, which must not end the script)
MESON_VER=$({ ls -d "$VMC_CACHE"/tools/meson-* 2>/dev/null || true; } | sed 's|.*/meson-||' | sort -V | tail -1)
if [ -z "$MESON_VER" ] || ! dpkg --compare-versions "$MESON_VER" ge 1.5 \
    || [ ! -x "$VMC_CACHE/tools/meson-$MESON_VER/usr/bin/meson" ]; then
    MESON_VER=$({ papt_cache madison meson 2>/dev/null || true; } | awk -F'|' '$3 ~ /Packages/ { gsub(/ /, "", $2); print $2 }' \
        | sort -uV | tail -1)
fi
[ -n "$MESON_VER" ] && dpkg --compare-versions "$MESON_VER" ge 1.5 \
    || die "QEMU 10 needs meson >= 1.5; the private apt root offers '${MESON_VER:-none}' (bookworm-backports missing? see $PAPT_ROOT/update.log)"
MESON="$VMC_CACHE/tools/meson-$MESON_VER"
if [ ! -x "$MESON/usr/bin/meson" ]; then
    log "unpacking meson $MESON_VER (bookworm-backports) into $MESON"
    papt_download "$VMC_CACHE/tools/debs" bookworm-backports "meson=$MESON_VER"
    rm -rf "$MESON.tmp"; mkdir -p "$MESON.tmp"
    dpkg-deb -x "$(ls "$VMC_CACHE/tools/debs/meson_${MESON_VER#*:}"_*.deb | head -1)" "$MESON.tmp"
    PYTHONPATH="$MESON.tmp/usr/lib/python3/dist-packages" "$MESON.tmp/usr/bin/meson" --version >/dev/null 2>&1 \
        || die "the meson unpacked into $MESON.tmp does not run"
    rm -rf "$MESON"; mv "$MESON.tmp" "$MESON"
fi
export PATH="$MESON/usr/bin:$PATH"
export PYTHONPATH="$MESON/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}"

# --- pristine source (per Debian version), Debian's quilt series applied -----------------------
SRC_ROOT="$VMC_CACHE/qemu/src/$VERKEY"
PRISTINE="$SRC_ROOT/pristine"
if [ ! -f "$SRC_ROOT/.done" ]; then
    tf=$SECONDS
    log "fetching qemu $DEBVER source (apt-get source, ~40 MB)"
    rm -rf "$SRC_ROOT"; mkdir -p "$SRC_ROOT/dl"
    papt_source "$SRC_ROOT/dl" "qemu=$DEBVER"
    d=$(find "$SRC_ROOT/dl" -mindepth 1 -maxdepth 1 -type d -name 'qemu-*' | head -1)
    [ -n "$d" ] && [ -f "$d/VERSION" ] || die "apt-get source did not unpack a qemu tree (log: $SRC_ROOT/dl/.source.log)"
    # dpkg-source applies debian/patches when it unpacks; make sure (its disable-pycotap.patch is
    # needed: configure's mkvenv runs offline).
    if [ -f "$d/debian/patches/series" ] && [ ! -f "$d/.pc/applied-patches" ]; then
        log "applying Debian's quilt series"
        sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$d/debian/patches/series" | while read -r p _; do
            patch -d "$d" -p1 -s -N --no-backup-if-mismatch <"$d/debian/patches/$p" >&2 \
                || die "Debian's own patch $p does not apply to $DEBVER"
        done
    fi
    mv "$d" "$PRISTINE"
    rm -rf "$SRC_ROOT/dl"
    touch "$SRC_ROOT/.done"
    log "source ready in $((SECONDS - tf)) s"
fi

# --- patched files: only the files the series touches are copied and patched ---------------
SERIES_PATCHES=()
if [ -f "$PATCH_DIR/series" ]; then
    while read -r p _; do
        case "$p" in ''|'#'*) continue ;; esac
        SERIES_PATCHES+=("$PATCH_DIR/$p")
    done <"$PATCH_DIR/series"
fi
now=$(cat "${SERIES_PATCHES[@]}" /dev/null | sed -n 's|^+++ b/||p; s|^--- a/||p' | sort -u)
STAGE=$(mktemp -d "$VMC_CACHE/qemu/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
while read -r f; do
    [ -n "$f" ] && [ -f "$PRISTINE/$f" ] || continue
    mkdir -p "$STAGE/$(dirname "$f")"; cp -p "$PRISTINE/$f" "$STAGE/$f"
done <<<"$now"
for p in "${SERIES_PATCHES[@]}"; do
    log "applying ${p##*/}"
    patch -d "$STAGE" -p1 -s -N --no-backup-if-mismatch <"$p" >&2 || die "patch ${p##*/} does not apply to qemu $DEBVER"
done

# --- persistent build tree: a file is copied only when its content changed, so only it gets a
# new mtime and ninja rebuilds just what it touches. Only files the series touches now or
# touched in the last build can differ from the pristine tree. -------------------------------
BTREE="$VMC_CACHE/qemu/build/$VERKEY/src"
TOUCHED="$BTREE/../touched-files"
DEVMAK=configs/devices/ppc64-softmmu/vmc.mak
if [ ! -f "$TOUCHED" ]; then
    mkdir -p "$BTREE"
    sed 's|^|/|' <<<"$now" >"$STAGE.exclude"
    rsync -rlc --delete --exclude=/build/ --exclude=/.pc/ --exclude="/$DEVMAK" --exclude-from="$STAGE.exclude" \
        "$PRISTINE/" "$BTREE/"
    rm -f "$STAGE.exclude"
    : >"$TOUCHED"
fi
while read -r f; do
    [ -n "$f" ] || continue
    # touched now: the patched file (absent if a patch deletes it); only before: back to pristine
    if grep -qxF -- "$f" <<<"$now"; then src="$STAGE/$f"; else src="$PRISTINE/$f"; fi
    if [ ! -f "$src" ]; then
        rm -f "$BTREE/$f"
    elif ! cmp -s "$src" "$BTREE/$f"; then
        mkdir -p "$(dirname "$BTREE/$f")"; cp "$src" "$BTREE/$f"
    fi
done < <(printf '%s\n' "$now" | cat - "$TOUCHED" | sort -u)
printf '%s\n' "$now" >"$TOUCHED"
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
    tc=$SECONDS
    log "configuring (ppc64-softmmu, lean, meson $MESON_VER)"
    rm -rf build
    ./configure --target-list=ppc64-softmmu --without-default-features --without-default-devices \
        --with-devices-ppc64=vmc --enable-fdt=system --disable-docs --disable-install-blobs \
        --disable-rust --disable-werror --disable-tools --disable-guest-agent --disable-user \
        >"$BTREE/../configure.log" 2>&1 \
        || { tail -40 "$BTREE/../configure.log" >&2; die "configure failed (log: $BTREE/../configure.log)"; }
    log "configured in $((SECONDS - tc)) s"
fi
tn=$SECONDS
log "building qemu-system-ppc64 (ninja -j$JOBS; cold ~7-12 min)"
cd build
nice ninja -j"$JOBS" qemu-system-ppc64 >"$BTREE/../ninja.log" 2>&1 &
npid=$!
tick=0
while kill -0 "$npid" 2>/dev/null; do
    sleep 1; tick=$((tick + 1))
    [ $((tick % 15)) -eq 0 ] && kill -0 "$npid" 2>/dev/null \
        && log "  $(grep -oE '^\[[0-9]+/[0-9]+\]' "$BTREE/../ninja.log" | tail -1)"
done
wait "$npid" || { grep -B2 -A20 -m3 -E 'error|FAILED' "$BTREE/../ninja.log" >&2 || tail -40 "$BTREE/../ninja.log" >&2
    die "build failed (log: $BTREE/../ninja.log)"; }
log "ninja: $(grep -oE '^\[[0-9]+/[0-9]+\]' "$BTREE/../ninja.log" | tail -1 || echo 'no work') in $((SECONDS - tn)) s"

./qemu-system-ppc64 --version | grep -q 'version 10\.0\.' \
    || die "built binary does not report QEMU 10.0.x: $(./qemu-system-ppc64 --version | head -1)"
mkdir -p "$OUT.tmp"
cp qemu-system-ppc64 "$OUT.tmp/"
printf 'debian-source=%s\npatch-hash=%s\nmeson=%s\n' "$DEBVER" "$HASH" "$MESON_VER" >"$OUT.tmp/BUILDINFO"
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
log "built $BIN in $((SECONDS - t0)) s"
echo "QEMU=$BIN"
