#!/usr/bin/env bash
# vmcd's start-to-listening time (exec to READY=1, the socket checked to exist then) and idle RSS,
# NativeAOT and JIT, against a C program that only binds, listens and notifies (the floor),
# all measured in this run. Prints one figure line per binary and the ratios; asserts nothing.
#   tests/service/start-time.sh [runs]    (default 20)
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib/common.sh"
runs=${1:-20}
work=$(mktemp -d /tmp/vmcd-start.XXXXXX)
trap 'rm -rf "$work"' EXIT
aot=$("$VMC_REPO/scripts/build-vmcd.sh" | sed -n 's/^VMCD=//p' | tail -1)
jit=$("$VMC_REPO/scripts/build-vmcd.sh" --jit | sed -n 's/^VMCD=//p' | tail -1)
gcc -O2 -Wall -Werror -o "$work/baseline-listener" "$VMC_REPO/tests/service/baseline-listener.c"
probe() { python3 "$VMC_REPO/tests/service/sdnotify.py" start-time "$runs" "$work/s.sock" -- "$@" | tr '\n' ' '; }
base=$(probe "$work/baseline-listener" "$work/s.sock")
a=$(probe "$aot" --socket-path "$work/s.sock")
j=$(probe "$jit" --socket-path "$work/s.sock")
echo "baseline (C): $base"
echo "vmcd AOT:     $a"
echo "vmcd JIT:     $j"
med() { sed -n 's/.*start-ms median=\([0-9.]*\).*/\1/p' <<<"$1"; }
rss() { sed -n 's/.*idle-rss-kib median=\([0-9]*\).*/\1/p' <<<"$1"; }
python3 - "$(med "$base")" "$(med "$a")" "$(med "$j")" "$(rss "$a")" "$(rss "$j")" <<'PY'
import sys
b, a, j, ra, rj = map(float, sys.argv[1:])
print(f"start: aot_ms={a:.1f} jit_ms={j:.1f} baseline_ms={b:.1f} aot/baseline={a / b:.1f} jit/aot={j / a:.1f}; "
      f"idle rss: aot_mib={ra / 1024:.1f} jit_mib={rj / 1024:.1f}")
PY
