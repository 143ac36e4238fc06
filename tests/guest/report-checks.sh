#!/usr/bin/env bash
# The conformance report (scripts/boot-test.sh --report DIR) as a browser shows it: headless
# Chromium (Debian's chromium, installed with the system apt) renders DIR/report.html offline to a
# PNG and dumps its DOM; the page must show its sections (summary, per kernel and driver: message
# types, states, faults and reactions, traps, sequence diagrams with inline SVG), load nothing from
# the network, and the PNG must not be blank.
#   tests/guest/report-checks.sh [DIR]   DIR: a report directory (default $VMC_REPORT_DIR, else one
#                                        made here by a one-scenario boot-test run)
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib/common.sh"
. "$VMC_REPO/scripts/lib/results.sh"
work=$(mktemp -d /tmp/vmc-report.XXXXXX)
RESULTS_FILE="$work/results"
dir=${1:-${VMC_REPORT_DIR:-}}
if [ -z "$dir" ] || [ ! -f "$dir/report.html" ]; then
    dir="$work/report"
    log "no report given: boot-test.sh --kernel 6.1 --report $dir faults/uaf-after-close"
    "$VMC_REPO/scripts/boot-test.sh" --kernel 6.1 --report "$dir" faults/uaf-after-close >"$work/boot.log" 2>&1
fi
apt_ensure chromium
html="$dir/report.html" png="$work/report.png"
if [ ! -s "$html" ]; then result FAIL report/exists "no $html"; results_summary; exit 1; fi
result PASS report/exists "$(stat -c %s "$html") bytes"
if grep -qiE '(src|href)=["'"'"']?(https?:)?//' "$html"; then result FAIL report/self-contained "it loads from the network: $(grep -oiE '(src|href)=["'"'"']?(https?:)?//[^ >]*' "$html" | head -1)"
else result PASS report/self-contained "no external src/href"; fi
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$work/profile")
timeout 120 chromium "${flags[@]}" --dump-dom "file://$html" >"$work/dom.html" 2>"$work/chromium-dom.err"
n=$(grep -o '<svg' "$work/dom.html" | wc -l)
missing=""
for s in "VMC conformance report" "CRQ message types and hypercalls exercised" "Adapter and HMC states reached" \
         "Faults injected and the driver's reaction" "Traps fired" "Sequence diagrams of each scenario's CRQ traffic" \
         "guest → hypervisor" "hypervisor → guest" "uaf-after-close"; do
    grep -qF "$(sed "s/'/\&#x27;/g" <<<"$s")" "$work/dom.html" || grep -qF "$s" "$work/dom.html" || missing+="${missing:+, }'$s'"
done
if [ -z "$missing" ] && [ "$n" -ge 1 ]; then result PASS report/sections "Chromium's DOM has every section and $n inline SVG sequence diagrams"
else result FAIL report/sections "missing: ${missing:-none}; $n SVG diagrams (DOM: $work/dom.html; $(tail -2 "$work/chromium-dom.err" | tr '\n' ' '))"; fi
timeout 120 chromium "${flags[@]}" --window-size=1200,1600 --screenshot="$png" "file://$html" >/dev/null 2>"$work/chromium-png.err"
if [ -s "$png" ] && python3 - "$png" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
w, h = struct.unpack(">II", data[16:24]); off, idat = 8, b""
while off < len(data):
    n, = struct.unpack(">I", data[off:off + 4]); t = data[off + 4:off + 8]
    if t == b"IDAT": idat += data[off + 8:off + 8 + n]
    off += 12 + n
raw = zlib.decompress(idat)
# distinct byte values over the decompressed scanlines: a blank page has one colour
distinct = len(set(raw[i] for i in range(0, len(raw), 97)))
print(f"{w}x{h}, {distinct} distinct sampled byte values")
sys.exit(0 if w >= 800 and h >= 800 and distinct > 8 else 1)
PY
then result PASS report/screenshot "$(python3 -c "import struct;d=open('$png','rb').read();print('%dx%d PNG, %d bytes'%(struct.unpack('>II',d[16:24])+(len(d),)))") not blank ($png)"
else result FAIL report/screenshot "no or blank PNG ($png; $(tail -2 "$work/chromium-png.err" | tr '\n' ' '))"; fi
[ -z "${REPORT_PNG:-}" ] || cp "$png" "$REPORT_PNG"
results_summary
[ "$R_FAIL" -eq 0 ]
