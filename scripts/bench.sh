#!/usr/bin/env bash
# Host-side benchmark, Release, ONE run: the physical baselines (raw AF_UNIX round trip, eventfd +
# shared-slot round trip, 16 KiB memcpy; two processes each) and vmcd over vmc-user version 2
# (H_SEND_CRQ through the rings, H_COPY_RDMA 16 KiB through the request slot, full echo, managed
# allocations per message on vmcd's connection thread, RSS, cold start, the ring spin). Ends with
#   bench: crq_rtt_ratio=X crq_vs_eventfd=Y rdma16k_vs_eventfd=Z alloc_per_msg=A rss_mb=W
#   scripts/bench.sh [--quick] [--runs N]   (--guest: the in-guest benchmark, needs the boot test)
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
    GUEST_APPEND=""     # no slub_debug/KFENCE: figures comparable with a guest booted without them
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
runs=1 args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
vmcd=$(scripts/build-vmcd.sh | sed -n 's/^VMCD=//p')
[ -x "$vmcd" ] || die "scripts/build-vmcd.sh did not print VMCD=<binary>"
log "building the benchmark (Release)"
buildlog=$(mktemp /tmp/vmc-bench-build.XXXXXX.log)
dotnet build tests/VmcBackend.Benchmarks/VmcBackend.Benchmarks.csproj -c Release -nologo -v q >"$buildlog" 2>&1 \
  || { cat "$buildlog" >&2; die "building tests/VmcBackend.Benchmarks failed (log $buildlog)"; }
rm -f "$buildlog"
bench=tests/VmcBackend.Benchmarks/bin/Release/net10.0/vmc-bench
if [ "$runs" -eq 1 ]; then exec "$bench" --vmcd "$vmcd" "${args[@]}"; fi
# Several runs: each closing line, then the spread of every figure.
lines=()
for i in $(seq "$runs"); do
    log "run $i of $runs"
    line=$("$bench" --vmcd "$vmcd" "${args[@]}" 2>/dev/null | grep '^bench: ')
    echo "$line"
    lines+=("$line")
done
printf '%s\n' "${lines[@]}" | awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); k[i] = kv[1]; v = kv[2] + 0;
    if (NR == 1 || v < lo[i]) lo[i] = v; if (NR == 1 || v > hi[i]) hi[i] = v; } }
    END { printf "bench spread over %d runs:", NR; for (i = 2; i in k; i++) printf " %s=%g..%g", k[i], lo[i], hi[i]; print "" }'
