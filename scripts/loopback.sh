#!/usr/bin/env bash
# Starts vmcd, runs the C# reference front-end (QEMU stand-in + simulated ibmvmc partition)
# against it for a few seconds on one and on two HMC sessions, and prints "loopback ok ...".
#   scripts/loopback.sh [seconds]
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$VMC_REPO"
secs=${1:-3}

command -v dotnet >/dev/null || die "the .NET 10 SDK is required (dotnet not on PATH)"
VMCD=$(scripts/build-vmcd.sh | sed -n 's/^VMCD=//p' | tail -1)
[ -x "$VMCD" ] || die "scripts/build-vmcd.sh gave no vmcd binary"
log "building the reference front-end (Release)"
dotnet build tests/ReferenceFrontEnd/ReferenceFrontEnd.csproj -c Release -nologo -v q >/tmp/vmc-loopback-build.log 2>&1 \
  || { cat /tmp/vmc-loopback-build.log >&2; die "build failed"; }

work=$(mktemp -d /tmp/vmc-loopback.XXXXXX)
sock="$work/vmcd.sock"
"$VMCD" --socket "$sock" --max-hmcs 2 >"$work/vmcd.log" 2>&1 &
vmcd=$!
trap 'kill -TERM $vmcd 2>/dev/null; wait $vmcd 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { cat "$work/vmcd.log" >&2; die "vmcd did not start"; }

fe=tests/ReferenceFrontEnd/bin/Release/net10.0/vmc-frontend
rc=0
"$fe" --socket "$sock" --seconds "$secs" --hmcs 1 | tee "$work/one.out" || rc=1
"$fe" --socket "$sock" --seconds 1 --hmcs 2 --size 4064 | sed 's/^PASS: loopback\//PASS: loopback-2hmc\//' || rc=1
kill -0 $vmcd 2>/dev/null && echo "PASS: loopback/vmcd-still-running" || { echo "FAIL: loopback/vmcd-still-running"; rc=1; }
if grep -qE ' ERR | FTL ' "$work/vmcd.log"; then echo "FAIL: loopback/vmcd-log-clean: $(grep -m1 -E ' ERR | FTL ' "$work/vmcd.log")"; rc=1; else echo "PASS: loopback/vmcd-log-clean"; fi
exit $rc
