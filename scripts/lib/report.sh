#!/usr/bin/env bash
# The conformance report of a boot-test run (scripts/boot-test.sh --report DIR calls it):
#   scripts/lib/report.sh DIR RESULTS VMCCTL
# RESULTS: boot-test's result lines; DIR/vmcd-traces/*.vmctrace: every vmcd of the run, recorded by
# vm.sh's vmcd_start (and DIR/traces/*.vmctrace, the fault scenarios' own recordings, used for a
# scenario that has no vmcd-traces file). Decodes each with `vmcctl trace --read FILE --json` and
# writes DIR/results.txt and DIR/report.html (scripts/lib/report.py; self-contained, no network).
# Prints one line: what the report holds.
set -euo pipefail
dir=${1:?usage: report.sh DIR RESULTS VMCCTL} results=${2:?results file} vmcctl=${3:?vmcctl}
repo=$(cd "$(dirname "$0")/../.." && pwd)
cp "$results" "$dir/results.txt"
for f in "$dir"/vmcd-traces/*.vmctrace "$dir"/traces/*.vmctrace; do
    [ -e "$f" ] || continue
    # a trace cut short (its vmcd was SIGKILLed) still decodes up to the cut: keep those records
    "$vmcctl" trace --read "$f" --json >"${f%.vmctrace}.jsonl" 2>"${f%.vmctrace}.jsonl.err" || true
done
python3 "$repo/scripts/lib/report.py" --dir "$dir" --faults-dir "$repo/tests/guest/faults" \
    --known-bugs "$repo/tests/guest/known-driver-bugs" --out "$dir/report.html"
