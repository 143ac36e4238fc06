#!/usr/bin/env bash
# Starts vmcd (from scripts/build-vmcd.sh), runs the C# reference front-end (the spapr-vmc device
# over vmc-user version 2 + the simulated ibmvmc partition) against it for a few seconds on one and
# on two HMC sessions, and prints PASS:/FAIL: lines and a closing "N passed, N failed, ..." line.
#   scripts/loopback.sh [seconds]
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$VMC_REPO/scripts/lib/vm.sh"
. "$VMC_REPO/scripts/lib/results.sh"
cd "$VMC_REPO" || exit 1
secs=${1:-3}

command -v dotnet >/dev/null || die "the .NET 10 SDK is required (dotnet not on PATH)"
vm_vmcd
log "building the reference front-end (Release)"
buildlog=$(mktemp /tmp/vmc-loopback-build.XXXXXX.log)
dotnet build tests/ReferenceFrontEnd/ReferenceFrontEnd.csproj -c Release -nologo -v q >"$buildlog" 2>&1 \
  || { cat "$buildlog" >&2; die "building tests/ReferenceFrontEnd failed (log $buildlog)"; }
rm -f "$buildlog"

work=$(mktemp -d /tmp/vmc-loopback.XXXXXX)
trap 'vm_cleanup; rm -rf "$work"' EXIT
vmcd_start "$work/vmcd.sock" "$work/vmcd.log" --max-hmcs 2

fe=tests/ReferenceFrontEnd/bin/Release/net10.0/vmc-frontend
results_from "" "$fe" --socket "$work/vmcd.sock" --seconds "$secs" --hmcs 1 \
    || [ "$R_FAIL" -gt 0 ] || result FAIL loopback/front-end "vmc-frontend --hmcs 1 failed"
f0=$R_FAIL
results_from "" bash -c '"$1" --socket "$2" --seconds 1 --hmcs 2 --size 4064 | sed "s/^\(PASS\|FAIL\): loopback\//\1: loopback-2hmc\//"' \
    _ "$fe" "$work/vmcd.sock" || [ "$R_FAIL" -gt "$f0" ] || result FAIL loopback-2hmc/front-end "vmc-frontend --hmcs 2 failed"
if kill -0 "$VMCD_PID" 2>/dev/null; then result PASS loopback/vmcd-still-running; else result FAIL loopback/vmcd-still-running "vmcd exited (log above)"; cat "$work/vmcd.log" >&2; fi
if grep -qE ' ERR | FTL |"@l":"(Error|Fatal)"' "$work/vmcd.log"; then
    result FAIL loopback/vmcd-log-clean "$(grep -m1 -E ' ERR | FTL |"@l":"(Error|Fatal)"' "$work/vmcd.log")"
else
    result PASS loopback/vmcd-log-clean
fi
results_finish
