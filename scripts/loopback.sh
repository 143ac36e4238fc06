#!/usr/bin/env bash
# Starts vmcd (from scripts/build-vmcd.sh), runs the C# reference front-end (the spapr-vmc device
# over vmc-user version 2 + the simulated ibmvmc partition) against it for a few seconds on one and
# on two HMC sessions, and prints PASS:/FAIL: lines and "loopback ok ...".
#   scripts/loopback.sh [seconds]
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$VMC_REPO"
secs=${1:-3}

command -v dotnet >/dev/null || die "the .NET 10 SDK is required (dotnet not on PATH)"
vmcd=$(scripts/build-vmcd.sh | sed -n 's/^VMCD=//p')
[ -x "$vmcd" ] || die "scripts/build-vmcd.sh did not print VMCD=<binary>"
log "building the reference front-end (Release)"
buildlog=$(mktemp /tmp/vmc-loopback-build.XXXXXX.log)
dotnet build tests/ReferenceFrontEnd/ReferenceFrontEnd.csproj -c Release -nologo -v q >"$buildlog" 2>&1 \
  || { cat "$buildlog" >&2; die "building tests/ReferenceFrontEnd failed (log $buildlog)"; }
rm -f "$buildlog"

work=$(mktemp -d /tmp/vmc-loopback.XXXXXX)
sock="$work/vmcd.sock"
"$vmcd" --socket "$sock" --max-hmcs 2 >"$work/vmcd.log" 2>&1 &
vmcd_pid=$!
trap 'kill -TERM $vmcd_pid 2>/dev/null; wait $vmcd_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { cat "$work/vmcd.log" >&2; die "vmcd did not create $sock within 10 s"; }

fe=tests/ReferenceFrontEnd/bin/Release/net10.0/vmc-frontend
rc=0
"$fe" --socket "$sock" --seconds "$secs" --hmcs 1 || rc=1
"$fe" --socket "$sock" --seconds 1 --hmcs 2 --size 4064 | sed 's/^\(PASS\|FAIL\): loopback\//\1: loopback-2hmc\//' || rc=1
kill -0 $vmcd_pid 2>/dev/null && echo "PASS: loopback/vmcd-still-running" || { echo "FAIL: loopback/vmcd-still-running"; rc=1; }
if grep -qE ' ERR | FTL |"@l":"(Error|Fatal)"' "$work/vmcd.log"; then
    echo "FAIL: loopback/vmcd-log-clean: $(grep -m1 -E ' ERR | FTL |"@l":"(Error|Fatal)"' "$work/vmcd.log")"; rc=1
else
    echo "PASS: loopback/vmcd-log-clean"
fi
exit $rc
