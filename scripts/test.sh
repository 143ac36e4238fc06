#!/usr/bin/env bash
# Runs every VmcBackend test suite and ends with one line "N passed, N failed, N skipped".
# Does its own set-up on a fresh machine (NuGet restore, builds, QEMU/guest builds via the
# suites' own scripts). Exit status is non-zero when anything failed.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$VMC_REPO"

passed=0 failed=0 skipped=0
logdir=$(mktemp -d /tmp/vmc-test.XXXXXX)

count() { # count SUITE PASSED FAILED SKIPPED
    printf '%-28s %s passed, %s failed, %s skipped\n' "$1" "$2" "$3" "$4"
    passed=$((passed + $2)); failed=$((failed + $3)); skipped=$((skipped + $4))
}

log "building the solution"
if ! dotnet build VmcBackend.sln -c Release -nologo -v q >"$logdir/build.log" 2>&1; then
    cat "$logdir/build.log" >&2
    count build 0 1 0
    echo "$passed passed, $failed failed, $skipped skipped"
    exit 1
fi

# .NET suites: parse dotnet test's summary line for each test project.
for proj in tests/*.Tests/*.Tests.csproj; do
    name=$(basename "$proj" .csproj)
    log "running $name"
    out="$logdir/$name.log"
    dotnet test "$proj" -c Release --no-build -nologo >"$out" 2>&1
    rc=$?
    line=$(grep -E '(Passed|Failed)!' "$out" | tail -1)
    p=$(sed -nE 's/.*Passed: *([0-9]+).*/\1/p' <<<"$line"); f=$(sed -nE 's/.*Failed: *([0-9]+),.*/\1/p' <<<"$line")
    s=$(sed -nE 's/.*Skipped: *([0-9]+).*/\1/p' <<<"$line")
    if [ -z "$line" ]; then p=0; f=1; s=0; fi
    [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] && f=1
    [ "${f:-0}" -ne 0 ] && grep -E '^\s+Failed |Error Message' -A3 "$out" | head -40 >&2
    count "$name" "${p:-0}" "${f:-0}" "${s:-0}"
done

# Shell suites print "PASS: name", "FAIL: name: why", "SKIP: name: why" lines.
# QEMU device checks and the guest boot tests build QEMU and the guest image themselves (cached).
shell_suites=(scripts/loopback.sh tests/qemu/device-checks.sh scripts/boot-test.sh)
for suite in "${shell_suites[@]}"; do
    name=$(basename "$suite" .sh)
    log "running $name"
    out="$logdir/$name.log"
    timeout 2400 bash "$suite" >"$out" 2>"$logdir/$name.err"
    rc=$?
    p=$(grep -c '^PASS: ' "$out"); f=$(grep -c '^FAIL: ' "$out"); s=$(grep -c '^SKIP: ' "$out")
    grep -E '^(PASS|FAIL|SKIP): ' "$out"
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1; echo "FAIL: $name exited with $rc"; tail -20 "$logdir/$name.err" >&2
    fi
    count "$name" "$p" "$f" "$s"
done

log "logs in $logdir"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
