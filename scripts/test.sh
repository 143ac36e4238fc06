#!/usr/bin/env bash
# Runs every VmcBackend test suite and ends with one line "N passed, N failed, N skipped, N xfailed"
# (xfailed: expected failures of the upstream driver, tests/guest/known-driver-bugs; they do not
# fail the run). Does its own set-up on a fresh machine (NuGet restore, builds, QEMU/guest builds
# via the suites' own scripts). Exit status is non-zero when anything failed.
#   scripts/test.sh [--junit DIR]    DIR gets one JUnit XML file per suite
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$VMC_REPO/scripts/lib/results.sh"
cd "$VMC_REPO"

junit=""
case "${1:-}" in
    --junit) junit=${2:?--junit needs a directory}; mkdir -p "$junit" ;;
    "") ;;
    *) die "usage: scripts/test.sh [--junit DIR]" ;;
esac
passed=0 failed=0 skipped=0 xfailed=0
logdir=$(mktemp -d /tmp/vmc-test.XXXXXX)
t0=$SECONDS

count() { # count SUITE PASSED FAILED SKIPPED XFAILED SECONDS
    printf '%-28s %s passed, %s failed, %s skipped, %s xfailed (%s s)\n' "$1" "$2" "$3" "$4" "$5" "$6"
    passed=$((passed + $2)); failed=$((failed + $3)); skipped=$((skipped + $4)); xfailed=$((xfailed + $5))
}
finish() {
    log "logs in $logdir; all suites took $((SECONDS - t0)) s"
    echo "$passed passed, $failed failed, $skipped skipped, $xfailed xfailed"
    [ "$failed" -eq 0 ]
    exit
}

log "building the solution"
if ! dotnet build VmcBackend.sln -c Release -nologo -v q >"$logdir/build.log" 2>&1; then
    cat "$logdir/build.log" >&2
    echo "FAIL: build: dotnet build VmcBackend.sln failed (output above)" | tee "$logdir/build.results"
    [ -z "$junit" ] || junit_write build "$logdir/build.results" "$junit/build.xml"
    count build 0 1 0 0 0
    finish
fi

# .NET suites: one result line per test from the console logger's "Passed/Failed/Skipped NAME"
# lines (the failure's first message line with it), cross-checked with dotnet test's own summary.
for proj in tests/*.Tests/*.Tests.csproj; do
    name=$(basename "$proj" .csproj)
    log "running $name"
    out="$logdir/$name.log" ts=$SECONDS
    dotnet test "$proj" -c Release --no-build -nologo --logger "console;verbosity=normal" >"$out" 2>&1
    rc=$?
    # A test that reproduces a driver bug ends with Assert.Warn("XFAIL (driver bug, ...)"), which
    # the logger shows as Skipped after a "NAME: XFAIL (driver bug ...)" line: counted as XFAIL.
    awk '
        /^[^ ]+: XFAIL \(driver bug/ { t = $0; sub(/: XFAIL \(driver bug.*/, "", t); x = $0; sub(/^[^ ]+: /, "", x); xf[t] = x }
        /^  (Passed|Failed|Skipped) .* \[[^]]*\]$/ {
            flush(); v = $1; n = $0; sub(/^  [A-Za-z]+ /, "", n); sub(/ \[[^]]*\]$/, "", n); want = (v == "Failed"); next }
        want && /^  Error Message:/ { getline m; sub(/^ +/, "", m); msg = m; want = 0 }
        function flush() {
            if (v == "Skipped" && (n in xf)) { v = "XFAIL"; msg = xf[n] }
            if (v != "") print (v == "Passed" ? "PASS" : v == "Failed" ? "FAIL" : v == "XFAIL" ? "XFAIL" : "SKIP") ": " n (msg != "" ? ": " msg : "")
            v = ""; msg = "" }
        END { flush() }' "$out" >"$logdir/$name.results"
    p=$(grep -c '^PASS: ' "$logdir/$name.results"); f=$(grep -c '^FAIL: ' "$logdir/$name.results")
    s=$(grep -c '^SKIP: ' "$logdir/$name.results"); x=$(grep -c '^XFAIL: ' "$logdir/$name.results")
    # dotnet test's own count: "Passed!  - Failed: 0, Passed: N, ..." or, at normal verbosity,
    # "Total tests: N" followed by "     Passed: N"
    line=$(grep -E '(Passed|Failed)!|^ +Passed: *[0-9]+$' "$out" | tail -1)
    want_p=$(sed -nE 's/.*Passed: *([0-9]+).*/\1/p' <<<"$line")
    if [ -z "$line" ] || [ "${want_p:-x}" != "$p" ] || { [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; }; then
        echo "FAIL: $name: dotnet test exited $rc, summary '${line:-none}', $p passed lines (log $out)" >>"$logdir/$name.results"
        f=$((f + 1)); tail -20 "$out" >&2
    fi
    grep '^FAIL: ' "$logdir/$name.results"
    [ "$f" -eq 0 ] || grep -E '^\s+Failed |Error Message' -A3 "$out" | head -40 >&2
    [ -z "$junit" ] || junit_write "$name" "$logdir/$name.results" "$junit/$name.xml"
    count "$name" "$p" "$f" "$s" "$x" $((SECONDS - ts))
done

# Shell suites print "PASS: name", "FAIL: name: why", "XFAIL: name: why", "SKIP: name: why" lines.
# The QEMU device checks (with guest-checks) and the guest boot tests build QEMU and the guest
# image themselves (cached); the workbench checks prove the boot tests' own verdicts.
shell_suites=(tests/setup/apt-test.sh scripts/loopback.sh tests/qemu/device-checks.sh tests/service/service-checks.sh
              scripts/boot-test.sh tests/guest/report-checks.sh
              tests/guest/workbench-checks.sh)
# boot-test writes its conformance report there; report-checks.sh renders it with headless Chromium
export VMC_REPORT_DIR="$logdir/report"
for suite in "${shell_suites[@]}"; do
    name=$(basename "$suite" .sh)
    log "running $name"
    out="$logdir/$name.log" ts=$SECONDS
    timeout 2400 bash "$suite" >"$out" 2>"$logdir/$name.err"
    rc=$?
    grep -E '^(PASS|FAIL|XFAIL|SKIP): ' "$out" >"$logdir/$name.results"
    if [ "$rc" -ne 0 ] && ! grep -q '^FAIL: ' "$out"; then
        echo "FAIL: $name: exited with $rc (log $logdir/$name.err)" >>"$logdir/$name.results"; tail -20 "$logdir/$name.err" >&2
    fi
    p=$(grep -c '^PASS: ' "$logdir/$name.results"); f=$(grep -c '^FAIL: ' "$logdir/$name.results")
    s=$(grep -c '^SKIP: ' "$logdir/$name.results"); x=$(grep -c '^XFAIL: ' "$logdir/$name.results")
    cat "$logdir/$name.results"
    [ -z "$junit" ] || junit_write "$name" "$logdir/$name.results" "$junit/$name.xml"
    count "$name" "$p" "$f" "$s" "$x" $((SECONDS - ts))
done
finish
