#!/usr/bin/env bash
# Build vmcd and vmcctl from this clone and print their paths: stdout lines VMCD=<binary> and
# VMCCTL=<binary>. Every script that runs them takes them from here, so there is one way they get built.
#   scripts/build-vmcd.sh          NativeAOT binaries (the default; dotnet publish -p:PublishAot=true)
#   scripts/build-vmcd.sh --jit    the JIT Release builds (what dotnet build and the NUnit suites use)
# The AOT publish takes about a minute per binary; when no source, project or props file changed
# since the last publish it is skipped (stamp of the inputs' hash next to each binary).
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
    for p in Vmcd Vmcctl; do
        log "building ${p,,} (JIT, Release)"
        dotnet build "$VMC_REPO/src/$p/$p.csproj" -c Release -nologo -v q >"$logf" 2>&1 \
            || { cat "$logf" >&2; die "building ${p,,} failed (dotnet build src/$p -c Release)"; }
    done
    echo "VMCD=$VMC_REPO/src/Vmcd/bin/Release/net10.0/vmcd"
    echo "VMCCTL=$VMC_REPO/src/Vmcctl/bin/Release/net10.0/vmcctl"
    exit 0
fi

# Tmds.LibC, vmcd's libc binding, ships these three architectures only.
case "$(uname -m)" in
    x86_64) rid=linux-x64 ;;
    aarch64) rid=linux-arm64 ;;
    armv7l|armv8l) rid=linux-arm ;;
    *) die "vmcd runs on x86_64, aarch64 and 32-bit arm Linux hosts only (its libc binding, Tmds.LibC, has no $(uname -m) build)" ;;
esac
inputs=$(cd "$VMC_REPO" && { find src -type f \( -name '*.cs' -o -name '*.csproj' \) -not -path '*/bin/*' -not -path '*/obj/*';
                             ls Directory.Build.props Directory.Packages.props global.json; } | LC_ALL=C sort \
         | xargs sha256sum | sha256sum | cut -c1-16)
for p in Vmcd Vmcctl; do
    name=${p,,}
    out="$VMC_REPO/src/$p/bin/Release/net10.0/$rid/publish"
    if [ -x "$out/$name" ] && [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs" ]; then
        echo "${name^^}=$out/$name"
        continue
    fi
    log "publishing $name (NativeAOT, $rid; about a minute)"
    rm -f "$out/.inputs"
    nice dotnet publish "$VMC_REPO/src/$p/$p.csproj" -c Release -r "$rid" -p:PublishAot=true -nologo -v q >"$logf" 2>&1 \
        || { cat "$logf" >&2; die "publishing $name failed (dotnet publish src/$p -c Release -r $rid -p:PublishAot=true)"; }
    # TreatWarningsAsErrors covers the compiler; the trim/AOT analysis of the publish step must be clean too.
    if grep -E 'warning (IL|CS)[0-9]+' "$logf" >&2; then die "the NativeAOT publish of $name printed warnings (above); fix them"; fi
    echo "$inputs" >"$out/.inputs"
    echo "${name^^}=$out/$name"
done
