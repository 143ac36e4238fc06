#!/usr/bin/env bash
# The conformance report of a boot-test run (scripts/boot-test.sh --report DIR calls it):
#   scripts/lib/report.sh DIR RESULTS VMCCTL
# RESULTS: boot-test's result lines; DIR/vmcd-traces/*.vmctrace: every vmcd of the run, recorded by
# vm.sh's vmcd_start (and DIR/traces/*.vmctrace, the fault scenarios' own recordings, used for a
# scenario that has no vmcd-traces file). Moves them with the results to DIR/runs/<kernels>-<driver>/,
# decodes each trace with `vmcctl trace --read FILE --json` and writes DIR/report.html over every
# run in DIR (scripts/lib/report.py; self-contained, no network).
# Prints one line: what the report holds.
set -euo pipefail
dir=${1:?usage: report.sh DIR RESULTS VMCCTL} results=${2:?results file} vmcctl=${3:?vmcctl}
repo=$(cd "$(dirname "$0")/../.." && pwd)
# this run goes to DIR/runs/<kernels>-<driver> (a run of the same kernels and driver replaces it):
# a stock run and a --driver-src run into the same DIR make one report with both
kernels=$(sed -n 's/^kernel\t//p' "$dir"/vmcd-traces/*.meta 2>/dev/null | sort -u | paste -sd+)
[ -n "$kernels" ] || kernels=$(sed -nE 's#^(PASS|FAIL|XFAIL|SKIP): ([^/]+)/.*#\2#p' "$results" | sort -u | paste -sd+)
drivers=$(sed -n 's/^driver\t//p' "$dir"/vmcd-traces/*.meta 2>/dev/null | sort -u)
case "$drivers" in
    ""|stock) label="${kernels:-none}-stock" ;;
    *) label="${kernels:-none}-driver-$(cksum <<<"$drivers" | cut -d' ' -f1)" ;;
esac
run="$dir/runs/$label"
rm -rf "$run"; mkdir -p "$run"
cp "$results" "$run/results.txt"
for sub in vmcd-traces traces; do [ ! -d "$dir/$sub" ] || mv "$dir/$sub" "$run/$sub"; done
for f in "$run"/vmcd-traces/*.vmctrace "$run"/traces/*.vmctrace; do
    [ -e "$f" ] || continue
    # a trace cut short (its vmcd was SIGKILLed) still decodes up to the cut: keep those records
    "$vmcctl" trace --read "$f" --json >"${f%.vmctrace}.jsonl" 2>"${f%.vmctrace}.jsonl.err" || true
done
python3 "$repo/scripts/lib/report.py" --dir "$dir" --faults-dir "$repo/tests/guest/faults" \
    --known-bugs "$repo/tests/guest/known-driver-bugs" --out "$dir/report.html"
