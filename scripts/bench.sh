#!/usr/bin/env bash
# Host-side benchmark: the physical baselines (raw AF_UNIX round trip, memfd memcpy) and vmcd
# (H_SEND_CRQ round trip, H_COPY_RDMA, full echo on 1 and 2 sessions, allocations per message,
# RSS over 1M messages, cold start), measured in ONE run, Release build. Ends with
#   bench: crq_rtt_ratio=X rdma16k_gbps=Y alloc_per_msg=Z rss_mb=W
#   scripts/bench.sh [--quick]      (--guest: the in-guest benchmark, needs the boot test)
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$VMC_REPO"
if [ "${1:-}" = "--guest" ]; then
    die "the guest-side benchmark needs the pseries boot test (scripts/boot-test.sh), which has not landed yet"
fi
log "building vmcd and the benchmark (Release)"
dotnet build src/Vmcd/Vmcd.csproj -c Release -nologo -v q >/tmp/vmc-bench-build.log 2>&1 \
  && dotnet build tests/VmcBackend.Benchmarks/VmcBackend.Benchmarks.csproj -c Release -nologo -v q >>/tmp/vmc-bench-build.log 2>&1 \
  || { cat /tmp/vmc-bench-build.log >&2; die "build failed"; }
exec tests/VmcBackend.Benchmarks/bin/Release/net10.0/vmc-bench --vmcd src/Vmcd/bin/Release/net10.0/vmcd "$@"
