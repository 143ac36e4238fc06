#!/usr/bin/env bash
# The conformance report (scripts/boot-test.sh --report DIR; scripts/lib/report.py): its unit tests
# (tests/report/test_report.py), then the page checked three ways:
#   1. from committed inputs: the real-driver traces of tests/traces (vmcctl trace --read --json)
#      with result lines that have a fault scenario and an XFAIL, plus a fault record: every
#      section, a diagram per scenario, the fault and the trap are in the page;
#   2. from a real boot: scripts/boot-test.sh --kernel 6.1 --report DIR basic writes report.html
#      (with a trace of the scenario drawn) and junit.xml;
#   3. rendered by headless Chromium (Debian's chromium, installed with apt_ensure): the DOM it
#      builds has the sections, an <svg> per scenario and the kernel label, and its screenshot is a
#      real PNG that is not blank.
# Prints PASS/FAIL lines. REPORT_SCREENSHOT=FILE keeps the screenshot (docs/report.png is one).
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib/common.sh"
. "$VMC_REPO/scripts/lib/vm.sh"
. "$VMC_REPO/scripts/lib/results.sh"

work=$(mktemp -d /tmp/vmc-report.XXXXXX)
REPORT_PY="$VMC_REPO/scripts/lib/report.py"
vm_vmcd >/dev/null

# check_page HTML SCENARIO...: the page's sections and one diagram per scenario (python, no browser)
check_page() {
    python3 - "$@" <<'PY'
import re, sys
page = open(sys.argv[1], encoding="utf-8").read()
want = ["<h1>VmcBackend conformance report</h1>", "Results by scenario", "CRQ message types exercised",
        "Adapter and session states reached", "Faults injected and the driver's reaction", "Driver traps that fired",
        "Sequence diagrams"]
missing = [w for w in want if w not in page]
for sc in sys.argv[2:]:
    m = re.search(r'<h4 id="[^"]*">[^<]*/ %s</h4>(.*?)(?=<h4 |<h2 |</body>)' % re.escape(sc), page, re.S)
    if not m or "<svg" not in m.group(1):
        missing.append("a sequence diagram of " + sc)
for bad in ("http://", "https://", "<script", "<link", "@import", "url(http"):
    if bad in page.replace('xmlns="http://www.w3.org/2000/svg"', ""):
        missing.append("no external reference (found %s)" % bad)
if missing:
    print("missing: " + "; ".join(missing)); sys.exit(1)
print("%d bytes, %d diagrams" % (len(page), page.count("<svg")))
PY
}

# 0. report.py's own unit tests (hand-made record groups)
if out=$(cd "$VMC_REPO" && python3 -m unittest tests/report/test_report.py 2>&1); then
    result PASS "report/unit-tests" "$(grep -E '^Ran ' <<<"$out")"
else
    result FAIL "report/unit-tests" "$(grep -E '^(FAIL|ERROR|Ran)' <<<"$out" | tr '\n' ' ')"
fi

# 1. committed inputs
in1="$work/committed"; mkdir -p "$in1"
for f in "$VMC_REPO"/tests/traces/6.1-trace.vmctrace.gz "$VMC_REPO"/tests/traces/6.12-attach.vmctrace.gz; do
    b=$(basename "$f" .vmctrace.gz)
    "$VMCCTL" trace --read "$f" --json >"$in1/$b.jsonl" || result FAIL "report/committed-json" "vmcctl trace --read $f --json failed"
done
# a fault scenario's trace: the 6.1 trace with a fault record (type 0x30) after its INIT_RESP
python3 - "$in1/6.1-trace.jsonl" "$in1/6.1-fault-transport-event.jsonl" <<'PY'
import json, sys
out = []
for line in open(sys.argv[1]):
    r = json.loads(line); out.append(line)
    if r.get("msg") == "INIT_RESP":
        out.append(json.dumps({"i": 0, "t": r["t"], "vm": r["vm"], "type": "type 0x30", "who": "?", "text": "transport event injected"}) + "\n")
open(sys.argv[2], "w").writelines(out)
PY
mkdir -p "$in1/faults"
printf '# A transport event once the session is open (trap 3).\ntransport-event when=open\n' >"$in1/faults/transport-event.faults"
cat >"$in1/results.txt" <<'EOF'
PASS: 6.1/trace/echo-32: data verified
PASS: 6.1/faults/transport-event/injected: vmcd: fault transport-event when=open: sent
XFAIL: 6.1/faults/transport-event/kernel-clean: BUG kmalloc-512 (Not tainted): Poison overwritten (known driver bug trap3-file-session-not-cleared-on-close, tests/guest/known-driver-bugs)
PASS: 6.12/attach/status-attached: HMC 0 router -> attached
EOF
mkdir -p "$in1/vmcd-traces"
mv "$in1/6.1-trace.jsonl" "$in1/vmcd-traces/6.1-trace.1.jsonl"
mv "$in1/6.1-fault-transport-event.jsonl" "$in1/vmcd-traces/6.1-fault-transport-event.1.jsonl"
mv "$in1/6.12-attach.jsonl" "$in1/vmcd-traces/6.12-attach.1.jsonl"
printf 'kernel\t6.12\ndriver\tgiven /src/ibmvmc\nvmcd\t\n' >"$in1/vmcd-traces/6.12-attach.1.meta"
if out=$(python3 "$REPORT_PY" --dir "$in1" --faults-dir "$in1/faults" --max-rows 40 --out "$in1/report.html" 2>&1) \
    && why=$(check_page "$in1/report.html" trace faults/transport-event attach); then
    result PASS "report/committed-inputs-sections" "$why"
else
    result FAIL "report/committed-inputs-sections" "${why:-$out}"
fi
if why=$(python3 - "$in1/report.html" 2>&1 <<'PY'
import re, sys
p = open(sys.argv[1], encoding="utf-8").read()
checks = {
    "6.1 stock group": "Kernel 6.1, stock driver" in p,
    "6.12 given driver": "Kernel 6.12, given: /src/ibmvmc driver" in p,
    "fault row with its description": "A transport event once the session is open (trap 3)." in p,
    "fault record drawn": "fault: transport event injected" in p,
    "trap 3 fired": "<td>trap 3</td>" in p,
    "attach state reached": re.search(r"HMC handed to a host program and back \(attach, detach\)</td><td class=\"yes\">", p) is not None,
    "CAP_RESP counted hv->guest": re.search(r"<tr><td>CAP_RESP</td><td class=\"n zero\">0</td><td class=\"n\">[1-9]", p) is not None,
    "long trace capped": "more rows not drawn" in p,
}
bad = [k for k, ok in checks.items() if not ok]
if bad:
    print("missing: " + ", ".join(bad)); sys.exit(1)
print(", ".join(checks))
PY
); then
    result PASS "report/committed-inputs-content" "$why"
else
    result FAIL "report/committed-inputs-content" "$why"
fi

# 2. a real boot
rep="$work/boot"
log "scripts/boot-test.sh --kernel 6.1 --report $rep basic"
nice "$VMC_REPO/scripts/boot-test.sh" --kernel 6.1 --report "$rep" basic >"$work/boot-test.log" 2>&1; rc=$?
if [ "$rc" -eq 0 ] && grep -q '^PASS: report/written' "$work/boot-test.log" && why=$(check_page "$rep/report.html" basic) \
    && python3 -c 'import sys, xml.etree.ElementTree as E; s = E.parse(sys.argv[1]).getroot()[0]; n = int(s.get("tests")); assert n > 10 and s.get("failures") == "0", n; print(n, "testcases")' "$rep/junit.xml" >"$work/junit.check" 2>&1; then
    result PASS "report/boot-test-writes-report" "$why; junit.xml $(cat "$work/junit.check"); $(ls "$rep"/runs/*/vmcd-traces/*.vmctrace | wc -l) trace(s) in $(cd "$rep/runs" && echo *)"
else
    result FAIL "report/boot-test-writes-report" "boot-test exit $rc; ${why:-} $(cat "$work/junit.check" 2>/dev/null) (log $work/boot-test.log)"
fi

# 3. headless Chromium
apt_ensure chromium
chrome() {
    local prof; prof=$(mktemp -d "$work/chromium.XXXXXX")
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --user-data-dir="$prof" "$@" 2>>"$work/chromium.log"
}
png="$work/report.png" page="$rep/report.html" sc=basic
# without the boot's report (its FAIL is above), the committed inputs' page is rendered
[ -f "$page" ] || page="$in1/report.html" sc=trace
chrome --dump-dom "file://$page" >"$work/dom.html"
if why=$(check_page "$work/dom.html" "$sc") && grep -q 'Kernel 6.1, stock driver' "$work/dom.html"; then
    result PASS "report/chromium-dom" "$why, kernel label 6.1"
else
    result FAIL "report/chromium-dom" "${why:-no kernel label} (dom: $work/dom.html; chromium log: $work/chromium.log)"
fi
chrome --screenshot="$png" --window-size=1280,2000 "file://$page" >/dev/null
# a real PNG of 1280x2000 whose pixels are not all one colour: decoded here (zlib, PNG filters)
if why=$(python3 - "$png" <<'PY'
import struct, sys, zlib
sys.excepthook = lambda t, e, tb: (print("%s: %s" % (t.__name__, e)), sys.exit(1))
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
off, idat, w = 8, b"", 0
while off < len(b):
    n, t = struct.unpack(">I4s", b[off:off + 8]); d = b[off + 8:off + 8 + n]; off += 12 + n
    if t == b"IHDR": w, h, depth, ctype = struct.unpack(">IIBB", d[:10])
    elif t == b"IDAT": idat += d
assert depth == 8 and ctype in (2, 6), "colour type %d depth %d" % (ctype, depth)
bpp = 3 if ctype == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
prev, rows, pos = bytearray(stride), [], 0
for y in range(h):
    f, line = raw[pos], bytearray(raw[pos + 1:pos + 1 + stride]); pos += 1 + stride
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0; up = prev[i]; c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + up) & 255
        elif f == 3: line[i] = (line[i] + ((a + up) >> 1)) & 255
        elif f == 4:
            p = a + up - c; pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
    if y % 4 == 0: rows.append(bytes(line))
    prev = line
colours, dark, total = set(), 0, 0
for r in rows:
    for x in range(0, stride, bpp * 2):
        px = r[x:x + 3]; colours.add(px); total += 1
        dark += sum(px) < 384
assert (w, h) == (1280, 2000), "size %dx%d" % (w, h)
assert len(colours) > 20 and dark > total // 200, "blank: %d colours, %d of %d sampled pixels dark" % (len(colours), dark, total)
print("%dx%d PNG, %d colours, %.1f%% dark pixels sampled" % (w, h, len(colours), 100.0 * dark / total))
PY
); then
    result PASS "report/chromium-screenshot" "$why"
else
    result FAIL "report/chromium-screenshot" "$why (file $png; chromium log: $work/chromium.log)"
fi
[ -z "${REPORT_SCREENSHOT:-}" ] || cp "$png" "$REPORT_SCREENSHOT"
results_finish
