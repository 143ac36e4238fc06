#!/usr/bin/env bash
# Build vmcd (Release) from this clone and print its path: last stdout line VMCD=<binary>.
# Every script that runs vmcd takes it from here, so there is one way vmcd gets built.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

log "building vmcd"
logf=$(mktemp /tmp/vmcd-build.XXXXXX.log)
dotnet build "$VMC_REPO/src/Vmcd/Vmcd.csproj" -c Release -nologo -v q >"$logf" 2>&1 \
    || { cat "$logf" >&2; die "building vmcd failed (dotnet build src/Vmcd -c Release; log $logf)"; }
rm -f "$logf"
echo "VMCD=$VMC_REPO/src/Vmcd/bin/Release/net10.0/vmcd"
