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
    # In-guest benchmark: the real driver, patched QEMU (TCG) and vmcd; vmcd's own busy time gives
    # the share of each round trip spent inside vmcd.
    . "$VMC_REPO/scripts/lib/vm.sh"
    count=${2:-2000}
    work=$(mktemp -d /tmp/vmc-gbench.XXXXXX)
    trap 'vm_cleanup' EXIT
    vm_prepare
    vmcd_start "$work/vmcd.sock" "$work/vmcd.log"
    qemu_start "$work/vmcd.sock" "vmc.test=\"bench --mtu 4096 --count $count\"" "$work/console" 600
    wait "$QEMU_PID" 2>/dev/null || true
    kill -TERM "$VMCD_PID" 2>/dev/null || true; wait "$VMCD_PID" 2>/dev/null || true
    grep -E 'VMCTEST (PASS|FAIL) bench' "$work/console" | sed 's/^.*VMCTEST //'
    total=$(sed -n 's/.*VMCTEST BENCH total_s=\([0-9.]*\).*/\1/p' "$work/console")
    busy=$(sed -n 's/.*requests, \([0-9.]*\) ms inside vmcd.*/\1/p' "$work/vmcd.log" | tail -1)
    [ -n "$total" ] && [ -n "$busy" ] || die "guest benchmark did not complete; console: $work/console"
    awk -v b="$busy" -v t="$total" 'BEGIN { printf "guest bench: vmcd busy %.0f ms of %.0f ms of echo round trips (%.1f%% inside vmcd; the rest is the TCG guest, QEMU and the socket)\n", b, t * 1000, 100 * b / (t * 1000) }'
    exit 0
fi
log "building vmcd and the benchmark (Release)"
dotnet build src/Vmcd/Vmcd.csproj -c Release -nologo -v q >/tmp/vmc-bench-build.log 2>&1 \
  && dotnet build tests/VmcBackend.Benchmarks/VmcBackend.Benchmarks.csproj -c Release -nologo -v q >>/tmp/vmc-bench-build.log 2>&1 \
  || { cat /tmp/vmc-bench-build.log >&2; die "build failed"; }
exec tests/VmcBackend.Benchmarks/bin/Release/net10.0/vmc-bench --vmcd src/Vmcd/bin/Release/net10.0/vmcd "$@"
