#!/usr/bin/env bash
# Build vmcd from this clone and print its path: last stdout line VMCD=<binary>.
# Every script that runs vmcd takes it from here, so there is one way vmcd gets built.
#   scripts/build-vmcd.sh          NativeAOT binary (the default; dotnet publish -p:PublishAot=true)
#   scripts/build-vmcd.sh --jit    the JIT Release build (what dotnet build and the NUnit suites use)
# The AOT publish takes about a minute; when no source, project or props file changed since the
# last publish it is skipped (stamp of the inputs' hash next to the binary).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

mode=aot
case "${1:-}" in
    "") ;;
    --jit) mode=jit ;;
    *) echo "usage: scripts/build-vmcd.sh [--jit]" >&2; exit 2 ;;
esac
command -v dotnet >/dev/null || die "the .NET 10 SDK is required (dotnet not on PATH)"
logf=$(mktemp /tmp/vmcd-build.XXXXXX.log)
trap 'rm -f "$logf"' EXIT

if [ "$mode" = jit ]; then
    log "building vmcd (JIT, Release)"
    dotnet build "$VMC_REPO/src/Vmcd/Vmcd.csproj" -c Release -nologo -v q >"$logf" 2>&1 \
        || { cat "$logf" >&2; die "building vmcd failed (dotnet build src/Vmcd -c Release)"; }
    echo "VMCD=$VMC_REPO/src/Vmcd/bin/Release/net10.0/vmcd"
    exit 0
fi

# Tmds.LibC, vmcd's libc binding, ships these three architectures only.
case "$(uname -m)" in
    x86_64) rid=linux-x64 ;;
    aarch64) rid=linux-arm64 ;;
    armv7l|armv8l) rid=linux-arm ;;
    *) die "vmcd runs on x86_64, aarch64 and 32-bit arm Linux hosts only (its libc binding, Tmds.LibC, has no $(uname -m) build)" ;;
esac
out="$VMC_REPO/src/Vmcd/bin/Release/net10.0/$rid/publish"
inputs=$(cd "$VMC_REPO" && { find src -type f \( -name '*.cs' -o -name '*.csproj' \) -not -path '*/bin/*' -not -path '*/obj/*';
                             ls Directory.Build.props Directory.Packages.props global.json; } | LC_ALL=C sort \
         | xargs sha256sum | sha256sum | cut -c1-16)
if [ -x "$out/vmcd" ] && [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs" ]; then
    echo "VMCD=$out/vmcd"
    exit 0
fi
log "publishing vmcd (NativeAOT, $rid; about a minute)"
rm -f "$out/.inputs"
nice dotnet publish "$VMC_REPO/src/Vmcd/Vmcd.csproj" -c Release -r "$rid" -p:PublishAot=true -nologo -v q >"$logf" 2>&1 \
    || { cat "$logf" >&2; die "publishing vmcd failed (dotnet publish src/Vmcd -c Release -r $rid -p:PublishAot=true)"; }
# TreatWarningsAsErrors covers the compiler; the trim/AOT analysis of the publish step must be clean too.
if grep -E 'warning (IL|CS)[0-9]+' "$logf" >&2; then die "the NativeAOT publish printed warnings (above); fix them"; fi
echo "$inputs" >"$out/.inputs"
echo "VMCD=$out/vmcd"
