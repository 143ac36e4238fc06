#!/usr/bin/env bash
# Guest boot tests: the upstream ibmvmc driver in a pseries guest talking to vmcd through the
# patched QEMU, on every kernel of the matrix. Builds whatever is missing, runs each scenario in
# its own VM and prints one line per check, the kernel first:
#   PASS: 6.12/basic/echo-4064    FAIL: 6.1/restart/completed: why    XFAIL: ...: known driver bug
# and a closing "N passed, N failed, N xfailed, N skipped" line; exits non-zero on any FAIL.
#
#   scripts/boot-test.sh [options] [scenario...]
#     scenarios: basic params twohmc restart reset stall kill9 hostile trace attach faults (default:
#                all); faults = one scenario per tests/guest/faults/NAME.faults, faults/NAME just one
#     --kernel 6.1|6.12         one kernel of the matrix (default: both)
#     --driver-src DIR          your ibmvmc.c/ibmvmc.h, built against each kernel's headers (DIR/6.1/
#                               and DIR/6.12/ are taken for that kernel when they hold the files)
#     --patched                 the stock driver of each kernel with tests/guest/patches applied
#                               (tests/guest/patches/apply.sh) as --driver-src
#     --kernel-image FILE [--modules-dir DIR]   your own ppc64le kernel (see build-guest.sh)
#     --junit FILE              also write the results as JUnit XML
#     --report DIR              DIR/report.html (self-contained conformance report: CRQ traffic both
#                               ways, states, faults, a sequence diagram per scenario) and DIR/junit.xml
#   VMC_REPORT_DIR=DIR: as --report DIR. BOOT_TIMEOUT=seconds per boot (180); HOSTILE_COUNT=random CRQ entries (1000000),
#   HOSTILE_TIMEOUT=seconds for the hostile guest (900); TRACE_DIR=directory: keep the traces the
#   trace and attach scenarios record (KERNEL-SCENARIO.vmctrace)
# Every boot has slub_debug=FZPU (6.12 also KFENCE); /init validates the slab caches before power
# off, and any kernel report fails the scenario, unless it is a known driver bug
# (tests/guest/known-driver-bugs), which is reported as XFAIL.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$VMC_REPO/scripts/lib/vm.sh"
. "$VMC_REPO/scripts/lib/results.sh"

kernels="" guest_opts=() junit="" scenarios=() driver_src="" patched="" report_dir=${VMC_REPORT_DIR:-}
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) kernels+=" ${2:?--kernel needs 6.1 or 6.12}"; shift ;;
        --driver-src) driver_src=${2:?$1 needs a directory}; shift ;;
        --modules-dir) guest_opts+=("$1" "${2:?$1 needs a directory}"); shift ;;
        --patched) patched=1 ;;
        --kernel-image) guest_opts+=("$1" "${2:?$1 needs a file}"); kernels=image; shift ;;
        --junit) junit=${2:?--junit needs a file}; shift ;;
        --report) report_dir=${2:?--report needs a directory}; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (try --help)" ;;
        *) scenarios+=("$1") ;;
    esac
    shift
done
kernels=${kernels:-"6.1 6.12"}
for k in $kernels; do case $k in 6.1|6.12|image) ;; *) die "--kernel $k: choose 6.1 or 6.12" ;; esac; done
[ -z "$patched" ] || [ -z "$driver_src" ] || die "give --patched or --driver-src DIR, not both"
ALL="basic params twohmc restart reset stall kill9 hostile trace attach faults"
FAULT_DIR="$VMC_REPO/tests/guest/faults"
FAULTS=$(cd "$FAULT_DIR" && ls -- *.faults | sed 's/\.faults$//' | tr '\n' ' ')
[ ${#scenarios[@]} -gt 0 ] || read -r -a scenarios <<<"$ALL"
for sc in "${scenarios[@]}"; do
    [[ " $ALL " == *" $sc "* ]] || { [[ $sc == faults/* ]] && [ -f "$FAULT_DIR/${sc#faults/}.faults" ]; } \
        || die "unknown scenario $sc ($ALL, or faults/NAME for NAME in: $FAULTS)"
done

# --report: every vmcd is traced (vm.sh's vmcd_start); the report is written at the end
if [ -n "$report_dir" ]; then
    mkdir -p "$report_dir" || die "--report $report_dir: cannot create the directory"
    report_dir=$(cd "$report_dir" && pwd); VM_REPORT_DIR=$report_dir; junit=${junit:-$report_dir/junit.xml}
    rm -rf "$report_dir/vmcd-traces"   # what a run that died left behind (report.sh moves a run's traces)
fi
BOOT_TIMEOUT=${BOOT_TIMEOUT:-180}
HOSTILE_COUNT=${HOSTILE_COUNT:-1000000} HOSTILE_TIMEOUT=${HOSTILE_TIMEOUT:-900}
KNOWN_BUGS="$VMC_REPO/tests/guest/known-driver-bugs"
work=$(mktemp -d /tmp/vmc-boot.XXXXXX)
RESULTS_FILE="$work/results"
trap 'vm_cleanup' EXIT

# kernel_verdict CONSOLE: look at every kernel report in the console log (live lines and the
# KLOG dump /init prints) and print "clean", "known<TAB>first line<TAB>bug id" or
# "report<TAB>first line". A report starts at a line the kernel prints first for a slab
# corruption, use-after-free, double free, BUG, WARNING, Oops or panic (not at harmless lines such
# as "WARNING: nvram corruption detected" or "lnx,oops-log"). A SLUB report runs to its closing
# "FIX <cache>: ..." line and includes the BUG header and WARNING that 6.12 prints inside it.
kernel_verdict() {
    awk -v known="$KNOWN_BUGS" '
        BEGIN {
            start = "^(BUG[: ]|kernel BUG at|WARNING: (CPU: |at )|Oops[:-]|Kernel panic|\\[[A-Za-z ]+ overwritten\\]|UBSAN: |KASAN: |KFENCE: |Unable to handle kernel|list_(add|del) corruption|INFO: task .* blocked)"
            slub = "^(\\[[A-Za-z ]+ overwritten\\]|BUG [^ ]+ \\()"
            nk = 0
            while ((getline l < known) > 0) {
                if (l ~ /^#/ || l ~ /^[ \t]*$/) continue
                nk++; kn[nk] = split(l, f, "\t") - 1; kid[nk] = f[1]
                for (i = 2; i <= kn[nk] + 1; i++) kp[nk, i - 1] = f[i]
            }
            nr = 0; inslub = 0; n = 0
        }
        # Each boot (reset has two): the kernel lines of its KLOG dump, which has them all in order;
        # only a boot that died before its dump is judged by the lines its console showed.
        function flush(   i) {
            for (i = 1; i <= n; i++) if (!hasklog || inklog[i]) judge(line[i])
            n = 0; hasklog = 0
        }
        function judge(l,   text) {
            if (!match(l, /\[ *[0-9]+\.[0-9]+\] /)) return
            text = substr(l, RSTART + RLENGTH)
            if (inslub) {
                body[nr] = body[nr] "\n" text
                if (text ~ /^FIX [^ ]+: /) inslub = 0
                return
            }
            if (text ~ start) {
                nr++; first[nr] = text; body[nr] = text; len[nr] = 1
                if (text ~ slub) inslub = 1
                return
            }
            if (nr && len[nr] < 120) { body[nr] = body[nr] "\n" text; len[nr]++ }
        }
        {
            sub(/\r$/, "")
            if (/VMCTEST BOOT /) flush()
            if (/VMCTEST KLOG BEGIN/) { hasklog = 1; k = 1; next }
            if (/VMCTEST KLOG END/) { k = 0; next }
            line[++n] = $0; inklog[n] = k
        }
        END {
            flush()
            if (!nr) { print "clean"; exit }
            for (r = 1; r <= nr; r++) {
                bug = ""
                for (k = 1; k <= nk && bug == ""; k++) {
                    ok = 1
                    for (i = 1; i <= kn[k]; i++) if (body[r] !~ kp[k, i]) { ok = 0; break }
                    if (ok) bug = kid[k]
                }
                if (bug == "") { print "report\t" first[r]; exit }
                if (!firstbug) { firstbug = bug; firstline = first[r] }
            }
            print "known\t" firstline "\t" firstbug
        }' "$1"
}

# report LABEL SCENARIO CONSOLE: the guest's VMCTEST lines, then kernel-clean and completed.
# With more than one boot in the log (reset), checks are named bootN/check.
report() {
    local k=$1 sc=$2 con=$3 line name rest boots boot=0 pre="" v
    boots=$(count_lines "$con" 'VMCTEST BOOT ')
    while IFS= read -r line; do
        line=${line%$'\r'}
        case "$line" in
            *"VMCTEST BOOT "*) boot=$((boot + 1)); [ "$boots" -gt 1 ] && pre="boot$boot/" ;;
            *"VMCTEST PASS "*) rest=${line#*VMCTEST PASS }; name=${rest%% *}
                [ "$rest" = "$name" ] && rest="" || rest=${rest#"$name" }
                result PASS "$k/$sc/$pre$name" "$rest" ;;
            *"VMCTEST FAIL "*) rest=${line#*VMCTEST FAIL }; name=${rest%% *}
                result FAIL "$k/$sc/$pre$name" "${rest#"$name" }" ;;
            *"VMCTEST XFAIL "*) rest=${line#*VMCTEST XFAIL }; name=${rest%% *}
                result XFAIL "$k/$sc/$pre$name" "${rest#"$name" } (a bug of the upstream driver)" ;;
        esac
    done <"$con"
    v=$(kernel_verdict "$con")
    case "$v" in
        clean) result PASS "$k/$sc/kernel-clean" ;;
        known*) IFS=$'\t' read -r _ line name <<<"$v"
            result XFAIL "$k/$sc/kernel-clean" "$line (known driver bug $name, tests/guest/known-driver-bugs)" ;;
        *) result FAIL "$k/$sc/kernel-clean" "${v#report$'\t'} (kernel report; console: $con)" ;;
    esac
    if [ "$(count_lines "$con" 'VMCTEST DONE')" -ge "$boots" ] && [ "$boots" -ge 1 ] \
        && [ "$(count_lines "$con" 'VMCTEST SLAB validated=[1-9]')" -ge "$boots" ]; then
        result PASS "$k/$sc/completed"
    else
        result FAIL "$k/$sc/completed" "guest did not finish and validate its slabs (timeout ${BOOT_TIMEOUT}s or crash); console: $con"
        tail -30 "$con" >&2
    fi
}

# scenario_done LABEL NAME CONSOLE START [--no-wait]: wait for the guest to end (unless the
# scenario did), report its checks, stop whatever still runs
scenario_done() {
    [ "${5:-}" = --no-wait ] || wait "$QEMU_PID" 2>/dev/null
    report "$1" "$2" "$3"
    vm_cleanup
    log "scenario $1/$2 took $((SECONDS - $4)) s"
}

# scenario LABEL NAME "VMCD-ARGS" "KERNEL-APPEND"
scenario() {
    local k=$1 sc=$2 vargs=$3 append=$4 sock="$work/$1-$2.sock" con="$work/$1-$2.console" start=$SECONDS
    log "scenario $k/$sc"
    # shellcheck disable=SC2086
    vmcd_start "$sock" "$work/$k-$sc.vmcd.log" $vargs
    qemu_start "$sock" "$append" "$con" "$BOOT_TIMEOUT"
    scenario_done "$k" "$sc" "$con" "$start"
}

# restart: vmcd is killed while the guest holds a session (and has closed a second HMC's
# session), then started again: the kill must take, the new vmcd must serve QEMU's reconnect,
# and the guest must see EBADFD and open a new session (vmctest's restart-* checks).
scenario_restart() {
    local k=$1 sc=restart sock="$work/$1-restart.sock" con="$work/$1-restart.console" start=$SECONDS
    local vlog="$work/$k-$sc.vmcd.log" old
    log "scenario $k/$sc"
    vmcd_start "$sock" "$vlog" --max-hmcs 2
    qemu_start "$sock" 'ibmvmc.max_hmcs=2 vmc.test="restart --closed-session"' "$con" "$BOOT_TIMEOUT"
    if wait_for_line "$con" 'VMCTEST WAITING restart' 120 "$QEMU_PID"; then
        old=$VMCD_PID
        kill -KILL "$old"; wait "$old" 2>/dev/null
        if kill -0 "$old" 2>/dev/null; then
            result FAIL "$k/$sc/vmcd-killed-and-restarted" "vmcd (pid $old) survived SIGKILL"
        else
            vmcd_start "$sock" "$vlog" --max-hmcs 2
            # The new vmcd is serving the guest when the guest's new session echoes through it.
            wait_for_line "$con" 'VMCTEST (PASS|FAIL) restart-new-session' 120 "$QEMU_PID"
            if grep -aq 'VMCTEST PASS restart-new-session' "$con" && kill -0 "$VMCD_PID" 2>/dev/null; then
                result PASS "$k/$sc/vmcd-killed-and-restarted" "pid $old killed, pid $VMCD_PID serving"
            else
                result FAIL "$k/$sc/vmcd-killed-and-restarted" "the restarted vmcd (pid $VMCD_PID) $(kill -0 "$VMCD_PID" 2>/dev/null && echo "never got the guest back" || echo "exited"); log: $vlog"
            fi
        fi
    else
        result FAIL "$k/$sc/vmcd-killed-and-restarted" "guest never reached the waiting point"
    fi
    scenario_done "$k" "$sc" "$con" "$start"
}

# reset: the guest reboots itself (system reset): spapr-vmc frees the queue and resets vmcd, the
# driver probes again on the second boot and a session works again. QEMU is stopped after it.
scenario_reset() {
    local k=$1 sc=reset sock="$work/$1-reset.sock" con="$work/$1-reset.console" start=$SECONDS
    log "scenario $k/$sc"
    vmcd_start "$sock" "$work/$k-$sc.vmcd.log"
    qemu_start "$sock" 'vmc.reboot=1 vmc.test="basic --drc 0x81000001"' "$con" "$((BOOT_TIMEOUT * 2))" --reboot
    wait_until "$((BOOT_TIMEOUT * 2))" "$QEMU_PID" eval '[ "$(count_lines "$con" "VMCTEST DONE")" -ge 2 ]'
    kill "$QEMU_PID" 2>/dev/null; wait "$QEMU_PID" 2>/dev/null
    # Only the first two boots count (the guest would go on rebooting).
    awk '/VMCTEST BOOT /{n++} n<=2' "$con" >"$con.2" && mv "$con.2" "$con"
    [ "$(count_lines "$con" 'VMCTEST BOOT ')" -ge 2 ] || result FAIL "$k/$sc/second-boot" "the guest did not boot a second time; console: $con"
    scenario_done "$k" "$sc" "$con" "$start" --no-wait
}

# ms_since T0: milliseconds since T0 (date +%s%N)
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# stall: vmcd is SIGSTOPped while the guest echoes. The VM keeps running (QMP query-status answers
# within 2 s all through the stall), QEMU declares vmcd lost after one deadline (timeout-ms 1000)
# and the guest's blocked read gets the transport event (EBADFD); then, in round 1, vmcd is
# continued, in round 2 replaced by a new vmcd, and each time the guest opens a new session and
# echoes (vmctest stall).
scenario_stall() {
    local k=$1 sc=stall sock="$work/$1-stall.sock" con="$work/$1-stall.console" mon="$work/$1-stall.qmp"
    local vlog="$work/$1-stall.vmcd.log" start=$SECONDS round t0 worst n bad te what qpid
    log "scenario $k/$sc"
    vmcd_start "$sock" "$vlog"
    qemu_start "$sock" 'vmc.test="stall --count 2"' "$con" "$BOOT_TIMEOUT" -qmp "unix:$mon,server=on,wait=off"
    for round in 1 2; do
        if ! wait_for_line "$con" "VMCTEST INFO stall-$round echoing" 120 "$QEMU_PID"; then
            result FAIL "$k/$sc/round-$round" "the guest was not echoing (console: $con)"; break
        fi
        kill -STOP "$VMCD_PID"; t0=$(date +%s%N)
        # query-status back to back (in the background) until the guest reports the end of its session
        rm -f "$mon.stop" "$mon.answers"
        (while [ ! -e "$mon.stop" ]; do qmp "$mon" query-status 2>/dev/null || echo "99999 no-answer"; done >"$mon.answers") &
        qpid=$!
        wait_for_line "$con" "VMCTEST (PASS|FAIL) stall-$round-transport-event" 10 "$QEMU_PID"
        te=$(ms_since "$t0")
        touch "$mon.stop"; wait "$qpid"
        n=$(wc -l <"$mon.answers")
        worst=$(awk '$1 > w { w = $1 } END { print w + 0 }' "$mon.answers")
        bad=$(grep -v '"status": "running"' "$mon.answers" | head -1)
        if [ "$n" -gt 0 ] && [ "$worst" -le 2000 ] && [ -z "$bad" ]; then
            result PASS "$k/$sc/qmp-answers-during-stall-$round" "$n query-status, slowest $worst ms"
        else
            result FAIL "$k/$sc/qmp-answers-during-stall-$round" "$n query-status, slowest $worst ms${bad:+, answer $bad}"
        fi
        # within two deadlines (2 x 1000 ms): QEMU checks the SQ eight times per deadline and the
        # slot requests (the write's H_COPY_RDMA) time out after one
        if grep -aq "VMCTEST PASS stall-$round-transport-event" "$con" && [ "$te" -le 2000 ]; then
            result PASS "$k/$sc/transport-event-within-deadline-$round" "guest saw EBADFD $te ms after SIGSTOP"
        else
            result FAIL "$k/$sc/transport-event-within-deadline-$round" "after $te ms: $(grep -a "stall-$round-transport-event" "$con" | tr -d '\r')"
        fi
        if [ "$round" = 1 ]; then
            kill -CONT "$VMCD_PID"; what="the continued vmcd (pid $VMCD_PID)"
        else
            kill -KILL "$VMCD_PID"; wait "$VMCD_PID" 2>/dev/null
            vmcd_start "$sock" "$vlog"; what="a new vmcd (pid $VMCD_PID)"
        fi
        wait_for_line "$con" "VMCTEST (PASS|FAIL) stall-$round-new-session" 120 "$QEMU_PID"
        if grep -aq "VMCTEST PASS stall-$round-new-session" "$con" && kill -0 "$VMCD_PID" 2>/dev/null; then
            result PASS "$k/$sc/served-again-$round" "$what serves the guest's new session"
        else
            result FAIL "$k/$sc/served-again-$round" "$what: $(grep -a "stall-$round-new-session" "$con" | tr -d '\r'); log: $vlog"
        fi
    done
    scenario_done "$k" "$sc" "$con" "$start"
}

# kill9: vmcd is SIGKILLed 20 times during continuous echo traffic, each time once the guest's
# current session has echoed 50 messages, and started again at once. After each kill the guest
# must echo again within 5 s; vmctest kill9 accounts for every message whose write() succeeded
# (echoed, or EBADFD to the writer) and prints the counts.
scenario_kill9() {
    local k=$1 sc=kill9 sock="$work/$1-kill9.sock" con="$work/$1-kill9.console" vlog="$work/$1-kill9.vmcd.log"
    local start=$SECONDS kills=20 i t0 ms worst=0 slow=0 all="" ok=1
    log "scenario $k/$sc"
    vmcd_start "$sock" "$vlog"
    qemu_start "$sock" "vmc.test=\"kill9 --count $kills\"" "$con" "$BOOT_TIMEOUT"
    for i in $(seq 1 $kills); do
        if ! wait_for_line "$con" "VMCTEST INFO kill9 session=$i busy" 60 "$QEMU_PID"; then
            result FAIL "$k/$sc/echoing-again-within-5s" "session $i never got busy (console: $con)"; ok=0; break
        fi
        kill -KILL "$VMCD_PID"; wait "$VMCD_PID" 2>/dev/null; t0=$(date +%s%N)
        vmcd_start "$sock" "$vlog"
        wait_for_line "$con" "VMCTEST INFO kill9 session=$((i + 1)) echoing" 5 "$QEMU_PID" \
            || { slow=$((slow + 1)); wait_for_line "$con" "VMCTEST INFO kill9 session=$((i + 1)) echoing" 60 "$QEMU_PID"; }
        ms=$(ms_since "$t0"); all+="$ms "
        [ "$ms" -gt "$worst" ] && worst=$ms
    done
    if [ "$ok" = 1 ]; then
        if [ "$slow" -eq 0 ]; then
            result PASS "$k/$sc/echoing-again-within-5s" "$kills kills; guest echoing again after (ms): $all"
        else
            result FAIL "$k/$sc/echoing-again-within-5s" "$slow of $kills kills took longer than 5 s; after (ms): $all"
        fi
    fi
    scenario_done "$k" "$sc" "$con" "$start"
}

# hostile: a guest whose vmcprobe.ko sends HOSTILE_COUNT (1,000,000) random CRQ entries and random
# H_COPY_RDMA arguments on a queue of its own between canary pages, while a second VM on the SAME
# vmcd echoes all along (vmctest soak, stopped by a line on its console). vmcd and both QEMUs stay
# up; the hostile guest's canaries stay intact.
scenario_hostile() {
    local k=$1 sc=hostile sock="$work/$1-hostile.sock" con="$work/$1-hostile.console" vlog="$work/$1-hostile.vmcd.log"
    local econ="$work/$1-hostile-echo.console" fifo="$work/$1-hostile-echo.stdin" start=$SECONDS
    local hpid epid infd hrc n0 n1 t0 secs pr got
    log "scenario $k/$sc"
    vmcd_start "$sock" "$vlog"
    mkfifo "$fifo"; exec {infd}<>"$fifo"
    qemu_start "$sock" 'vmc.test="soak"' "$econ" "$HOSTILE_TIMEOUT" --stdin "$fifo"; epid=$QEMU_PID
    if ! wait_for_line "$econ" 'VMCTEST INFO soak n=' 120 "$epid"; then
        result FAIL "$k/$sc/second-vm-echoes" "the echoing VM never echoed (console: $econ)"
    else
        qemu_start "$sock" "vmc.probe=hostile vmc.probe_count=$HOSTILE_COUNT" "$con" "$HOSTILE_TIMEOUT"; hpid=$QEMU_PID
        wait_for_line "$con" 'VMCTEST INFO probe-start' 120 "$hpid"
        n0=$(grep -a 'VMCTEST INFO soak n=' "$econ" | tail -1 | tr -d '\r' | sed 's/.*n=//'); t0=$SECONDS
        wait_for_line "$con" 'VMCTEST PROBE done' "$HOSTILE_TIMEOUT" "$hpid"
        secs=$((SECONDS - t0))
        n1=$(grep -a 'VMCTEST INFO soak n=' "$econ" | tail -1 | tr -d '\r' | sed 's/.*n=//')
        wait "$hpid" 2>/dev/null; hrc=$?
        grep -a 'VMCTEST PROBE hostile-' "$con" | tr -d '\r' | sed 's/^.*VMCTEST PROBE /    /' >&2
        got=$(grep -a 'VMCTEST PROBE hostile-sent ' "$con" | tr -d '\r' | awk '{print $4}')
        if [ "${got:-0}" = "$HOSTILE_COUNT" ]; then
            result PASS "$k/$sc/entries-sent" "$got random CRQ entries and $(grep -a 'VMCTEST PROBE hostile-rdma ' "$con" | tr -d '\r' | awk '{print $4}') random H_COPY_RDMA in $secs s"
        else
            result FAIL "$k/$sc/entries-sent" "sent ${got:-none} of $HOSTILE_COUNT (console: $con)"
        fi
        for pr in "hostile-reg-crq 0" "hostile-free-crq 0" "hostile-canary-bytes-changed 0" "done 0"; do
            set -- $pr
            got=$(grep -a "VMCTEST PROBE $1 " "$con" | tr -d '\r' | awk '{print $4}')
            if [ "$got" = "$2" ]; then result PASS "$k/$sc/$1"; else result FAIL "$k/$sc/$1" "want $2, got '${got:-nothing}'"; fi
        done
        if [ "$hrc" -eq 0 ]; then result PASS "$k/$sc/hostile-qemu-stayed-up"
        else result FAIL "$k/$sc/hostile-qemu-stayed-up" "QEMU ended with status $hrc (124: timeout; console: $con)"; fi
        if [ -n "$n0" ] && [ -n "$n1" ] && [ "$n1" -gt "$n0" ] && ! grep -aq 'VMCTEST FAIL soak' "$econ"; then
            result PASS "$k/$sc/second-vm-echoed-throughout" "$((n1 - n0)) echoes during the hostile run ($secs s)"
        else
            result FAIL "$k/$sc/second-vm-echoed-throughout" "echo count ${n0:-?} -> ${n1:-?}; $(grep -a 'VMCTEST FAIL soak' "$econ" | tr -d '\r')"
        fi
    fi
    if kill -0 "$VMCD_PID" 2>/dev/null; then result PASS "$k/$sc/vmcd-stayed-up"
    else result FAIL "$k/$sc/vmcd-stayed-up" "vmcd exited; log: $vlog"; fi
    echo stop >&"$infd"
    wait_until 60 "$epid" eval '! kill -0 '"$epid"' 2>/dev/null'
    wait "$epid" 2>/dev/null
    exec {infd}>&-
    report "$k" "$sc" "$con"
    report "$k" "$sc-echo-vm" "$econ"
    vm_cleanup
    log "scenario $k/$sc took $((SECONDS - start)) s"
}

# trace_start LABEL NAME SOCKET: `vmcctl trace --write` on vmcd's control socket (<socket>.ctl),
# started before QEMU so the VM is recorded from its first call (replayable); it ends when the VM
# has disconnected. Sets TRACE_PID, TRACE_FILE, TRACE_LOG.
trace_start() {
    TRACE_FILE="$work/$1-$2.vmctrace" TRACE_LOG="$work/$1-$2.vmcctl-trace.log"
    vmcctl_trace "$3" "$TRACE_FILE" "$TRACE_LOG" --stop-after 1; local rc=$?
    TRACE_PID=$TRACER_PID
    VM_PIDS+=("$TRACE_PID")
    [ "$rc" -eq 0 ] || { result FAIL "$1/$2/trace-recorded" "vmcctl trace did not start: $(tr '\n' ' ' <"$TRACE_LOG")"; return 1; }
}

# trace_check LABEL NAME: after the VM ended, vmcctl trace --write must end by itself (exit 0) with
# a file; vmcctl replay of it: every output identical (exit 0); a copy with one byte of a hypervisor
# entry (the 10th POST record) changed: diverges (exit 1). TRACE_DIR keeps the recording.
trace_check() {
    local k=$1 sc=$2 rc out n tampered="$TRACE_FILE.tampered"
    wait_until 15 "" eval '! kill -0 '"$TRACE_PID"' 2>/dev/null'
    wait "$TRACE_PID" 2>/dev/null; rc=$?
    if [ "$rc" -ne 0 ] || [ ! -s "$TRACE_FILE" ]; then
        result FAIL "$k/$sc/trace-recorded" "vmcctl trace --write exited $rc: $(tr '\n' ' ' <"$TRACE_LOG")"; return
    fi
    n=$("$VMCCTL" trace --read "$TRACE_FILE" | grep -vc '^#')
    result PASS "$k/$sc/trace-recorded" "$n records, $(stat -c %s "$TRACE_FILE") bytes; $(tail -1 "$TRACE_LOG")"
    [ -z "${TRACE_DIR:-}" ] || { mkdir -p "$TRACE_DIR" && cp "$TRACE_FILE" "$TRACE_DIR/$k-$sc.vmctrace"; }
    out=$("$VMCCTL" replay "$TRACE_FILE" 2>&1); rc=$?
    if [ "$rc" -eq 0 ]; then result PASS "$k/$sc/replay-identical" "$(head -1 <<<"$out")"
    else result FAIL "$k/$sc/replay-identical" "vmcctl replay exited $rc: $(head -3 <<<"$out" | tr '\n' ' ')"; fi
    if ! python3 - "$TRACE_FILE" "$tampered" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
off, posts = 32, 0
while off + 16 <= len(b):
    n = int.from_bytes(b[off + 4:off + 8], "little")
    if b[off] == 0x11:
        posts += 1
        if posts == 10:
            b[off + 16 + 6] ^= 1
            break
    off += 16 + n
open(sys.argv[2], "wb").write(b)
sys.exit(0 if posts == 10 else 1)
PY
    then
        result FAIL "$k/$sc/replay-tampered-diverges" "the trace has fewer than 10 POST records"; return
    fi
    out=$("$VMCCTL" replay "$tampered" 2>&1); rc=$?
    if [ "$rc" -eq 1 ] && grep -q 'diverge' <<<"$out"; then result PASS "$k/$sc/replay-tampered-diverges" "exit 1: $(grep -A3 -m1 'diverges' <<<"$out" | tr -s ' ' | tr '\n' ' ')"
    else result FAIL "$k/$sc/replay-tampered-diverges" "vmcctl replay of a tampered copy exited $rc: $(head -3 <<<"$out" | tr '\n' ' ')"; fi
}

# trace: a basic guest run (session, router, echoes, close, reopen) recorded by vmcctl trace
# --write, then replayed: identical; a tampered copy: diverges.
scenario_trace() {
    local k=$1 sc=trace sock="$work/$1-trace.sock" con="$work/$1-trace.console" start=$SECONDS
    log "scenario $k/$sc"
    vmcd_start "$sock" "$work/$k-$sc.vmcd.log"
    if trace_start "$k" "$sc" "$sock"; then
        qemu_start "$sock" 'vmc.test="basic --drc 0x81000001 --mtu 4096"' "$con" "$BOOT_TIMEOUT"
        wait "$QEMU_PID" 2>/dev/null
        trace_check "$k" "$sc"
    fi
    scenario_done "$k" "$sc" "$con" "$start" --no-wait
}

# hmc0_status SOCKET: "HANDLER session N open|closed" of vm1's HMC 0 from vmcctl status --json
hmc0_status() {
    "$VMCCTL" --control "$1.ctl" status --json 2>/dev/null | python3 -c '
import json, sys
vm = [v for v in json.load(sys.stdin)["vms"] if v["name"] == "vm1"][0]
h = [h for h in vm["hmc"] if h["index"] == 0][0]
print(h["handler"], "session", h.get("session", "-"), "open" if h["open"] else "closed")'
}

# attach: the guest's vmctest attach talks to hmc-example (tests/HmcExample) through vmcctl attach:
# the host attaches once the guest's session is served by the router, hmc-example answers and sends
# an unsolicited echo request that must reach the guest blocked in read() within 100 ms (measured
# in the guest), then exits on the guest's BYE: vmcctl detaches and the router serves the same
# session again. The run is traced and replayed like the trace scenario.
scenario_attach() {
    local k=$1 sc=attach sock="$work/$1-attach.sock" con="$work/$1-attach.console" start=$SECONDS
    local fifo="$work/$1-attach.stdin" to="$work/$1-attach.to-vmcctl" from="$work/$1-attach.from-vmcctl"
    local alog="$work/$1-attach.vmcctl-attach.log" hlog="$work/$1-attach.hmc-example.log"
    local infd apid hpid before st rc
    log "scenario $k/$sc"
    vmcd_start "$sock" "$work/$k-$sc.vmcd.log"
    trace_start "$k" "$sc" "$sock" || { scenario_done "$k" "$sc" "$con" "$start" --no-wait; return; }
    rm -f "$fifo" "$to" "$from"; mkfifo "$fifo" "$to" "$from"; exec {infd}<>"$fifo"
    qemu_start "$sock" 'vmc.test="attach"' "$con" "$BOOT_TIMEOUT" --stdin "$fifo"
    if wait_for_line "$con" 'VMCTEST WAITING attach' 120 "$QEMU_PID"; then
        before=$(hmc0_status "$sock")
        # vmcctl opens its stdout first, hmc-example its stdin first: the two fifos open in one order.
        "$HMC_EXAMPLE" <"$from" >"$to" 2>"$hlog" & hpid=$!; VM_PIDS+=("$hpid")
        "$VMCCTL" --control "$sock.ctl" attach --vm vm1 --hmc 0 >"$from" <"$to" 2>"$alog" & apid=$!; VM_PIDS+=("$apid")
        if wait_until 10 "$apid" eval '[ "$(hmc0_status "$sock" | cut -d" " -f1)" = attached ]'; then
            st=$(hmc0_status "$sock")
            if [ "${before%% *}" = router ] && [ "${st#* }" = "${before#* }" ]; then
                result PASS "$k/$sc/status-attached" "HMC 0 router -> attached, ${st#* } (vmcctl status --json)"
            else
                result FAIL "$k/$sc/status-attached" "before '$before', attached '$st'"
            fi
            echo attached >&"$infd"
            # hmc-example exits on the guest's BYE; vmcctl sees EOF on stdin and detaches.
            wait_for_line "$con" 'VMCTEST (WAITING detach|FAIL)' 60 "$QEMU_PID"
            wait_until 10 "" eval '! kill -0 '"$apid"' 2>/dev/null'; wait "$apid" 2>/dev/null; rc=$?
            wait "$hpid" 2>/dev/null
            st=$(hmc0_status "$sock")
            if [ "$rc" -eq 0 ] && grep -q '^vmcctl: detached' "$alog" && [ "$st" = "router ${before#* }" ]; then
                result PASS "$k/$sc/status-detached" "vmcctl attach exited 0; HMC 0 back to the router, same ${st#* }"
            else
                result FAIL "$k/$sc/status-detached" "vmcctl attach exit $rc, status '$st' (before '$before'): $(tr '\n' ' ' <"$alog")"
            fi
            if grep -q 'unsolicited message token .* answered' "$hlog"; then
                result PASS "$k/$sc/unsolicited-answered" "hmc-example: $(grep -m1 -o 'answered .*' "$hlog")"
            else
                result FAIL "$k/$sc/unsolicited-answered" "hmc-example got no answer: $(tail -3 "$hlog" | tr '\n' ' ')"
            fi
            echo detached >&"$infd"
        else
            result FAIL "$k/$sc/status-attached" "vmcctl attach did not take HMC 0 within 10 s: $(tr '\n' ' ' <"$alog")"
        fi
    else
        result FAIL "$k/$sc/status-attached" "the guest never reached its attach point (console: $con)"
    fi
    wait "$QEMU_PID" 2>/dev/null
    exec {infd}>&-
    trace_check "$k" "$sc"
    scenario_done "$k" "$sc" "$con" "$start" --no-wait
}

# fault_header FILE KEY: the value of a "# KEY: value" line of a faults file (vmcd, guest)
fault_header() { sed -n "s/^# $2: //p" "$1" | head -1; }

# faults/NAME: vmcd --faults tests/guest/faults/NAME.faults, the guest runs vmctest fault NAME
# (its reaction: PASS, or XFAIL for a known driver bug, quoted; then a new session), every rule of
# the file must have acted (vmcd's "fault RULE: what it did" lines), and the kernel must be clean
# (SLUB: a report of a known driver bug is XFAIL). With --report, vmcd_start traces it like every vmcd.
scenario_fault() {
    local k=$1 name=$2 sc="faults/$2" file="$FAULT_DIR/$2.faults" start=$SECONDS
    local sock="$work/$1-fault-$2.sock" con="$work/$1-fault-$2.console" vlog="$work/$1-fault-$2.vmcd.log"
    local rule rules=0 acted=0 missing="" what=""
    log "scenario $k/$sc"
    # shellcheck disable=SC2046
    vmcd_start "$sock" "$vlog" --faults "$file" $(fault_header "$file" vmcd)
    qemu_start "$sock" "$(fault_header "$file" guest) vmc.test=\"fault $name\"" "$con" "$BOOT_TIMEOUT"
    wait "$QEMU_PID" 2>/dev/null
    while IFS= read -r rule; do
        rule=$(sed 's/#.*//; s/^[ \t]*//; s/[ \t]*$//' <<<"$rule")
        [ -n "$rule" ] || continue
        rules=$((rules + 1))
        if grep -aqF "fault $rule: " "$vlog"; then
            acted=$((acted + 1)); what+="${what:+; }$(grep -aF "fault $rule: " "$vlog" | head -1 | sed 's/.*\(fault .*\)/\1/')"
        else missing+="${missing:+, }'$rule'"; fi
    done <"$file"
    if [ "$acted" -eq "$rules" ]; then result PASS "$k/$sc/injected" "vmcd: $what"
    else result FAIL "$k/$sc/injected" "never acted: $missing (vmcd log: $vlog)"; fi
    # the reaction is vmctest's line, or a kernel report that ended vmctest (then kernel-clean quotes it)
    if ! grep -aqE 'VMCTEST (PASS|FAIL|XFAIL) reaction' "$con" && [ "$(kernel_verdict "$con")" = clean ]; then
        result FAIL "$k/$sc/reaction" "vmctest fault $name stated no reaction and the kernel reported nothing (console: $con)"
    fi
    scenario_done "$k" "$sc" "$con" "$start" --no-wait
}

t0=$SECONDS
vm_tools
if [[ " ${scenarios[*]} " == *" trace "* || " ${scenarios[*]} " == *" attach "* || -n "$report_dir" ]]; then
    [ -x "${VMCCTL:-}" ] || die "no usable vmcctl '${VMCCTL:-}' for the trace/attach scenarios (scripts/build-vmcd.sh builds it; or set VMC_VMCCTL)"
fi
if [[ " ${scenarios[*]} " == *" attach "* ]]; then
    log "building hmc-example (tests/HmcExample, Release)"
    dotnet build "$VMC_REPO/tests/HmcExample/HmcExample.csproj" -c Release -nologo -v q >"$work/hmc-example.build.log" 2>&1 \
        || { cat "$work/hmc-example.build.log" >&2; die "building tests/HmcExample failed (log above)"; }
    HMC_EXAMPLE="$VMC_REPO/tests/HmcExample/bin/Release/net10.0/hmc-example"
fi
for k in $kernels; do
    kopts=("${guest_opts[@]}")
    [ "$k" = image ] || kopts+=(--kernel "$k")
    if [ -n "$patched" ]; then
        # the stock driver of this kernel (build-guest.sh's DRIVER_SRC), patched
        vm_guest "${kopts[@]}" >/dev/null || { result FAIL "$k/build/guest-image" "$VM_GUEST_ERROR"; continue; }
        if ! "$VMC_REPO/tests/guest/patches/apply.sh" "$DRIVER_SRC" "$work/patched-$k" >"$work/patched-$k.log" 2>&1; then
            result FAIL "$k/build/patched-driver" "tests/guest/patches/apply.sh $DRIVER_SRC: $(tail -1 "$work/patched-$k.log")"; continue
        fi
        log "patched driver for $k: $(grep -c '^applied' "$work/patched-$k.log") patches applied ($work/patched-$k)"
        kopts+=(--driver-src "$work/patched-$k")
    elif [ -n "$driver_src" ]; then
        if [ -f "$driver_src/$k/ibmvmc.c" ]; then kopts+=(--driver-src "$driver_src/$k"); else kopts+=(--driver-src "$driver_src"); fi
    fi
    tk=$SECONDS
    if ! vm_guest "${kopts[@]}"; then
        result FAIL "$k/build/guest-image" "$VM_GUEST_ERROR"
        continue
    fi
    log "kernel $GUEST_KERNEL ($GUEST_ABI) ready in $((SECONDS - tk)) s"
    for sc in "${scenarios[@]}"; do
        case $sc in
            basic)   scenario "$GUEST_KERNEL" basic "" 'vmc.test="basic --drc 0x81000001 --mtu 4096;burst --mtu 4096"' ;;
            params)  scenario "$GUEST_KERNEL" params "--max-mtu 16384 --pool-size 64 --drc-index 0x81000042" \
                         'ibmvmc.max_mtu=8192 ibmvmc.buf_pool_size=16 vmc.test="basic --drc 0x81000042 --mtu 8192"' ;;
            twohmc)  scenario "$GUEST_KERNEL" twohmc "--max-hmcs 2" 'ibmvmc.max_hmcs=2 vmc.test="twohmc --mtu 4096"' ;;
            restart) scenario_restart "$GUEST_KERNEL" ;;
            reset)   scenario_reset "$GUEST_KERNEL" ;;
            stall)   scenario_stall "$GUEST_KERNEL" ;;
            kill9)   scenario_kill9 "$GUEST_KERNEL" ;;
            hostile) scenario_hostile "$GUEST_KERNEL" ;;
            trace)   scenario_trace "$GUEST_KERNEL" ;;
            attach)  scenario_attach "$GUEST_KERNEL" ;;
            faults)  for f in $FAULTS; do scenario_fault "$GUEST_KERNEL" "$f"; done ;;
            faults/*) scenario_fault "$GUEST_KERNEL" "${sc#faults/}" ;;
        esac
    done
done
log "boot tests took $((SECONDS - t0)) s; logs in $work"
if [ -n "$report_dir" ]; then
    if out=$("$VMC_REPO/scripts/lib/report.sh" "$report_dir" "$RESULTS_FILE" "$VMCCTL" 2>&1); then result PASS "report/written" "$out"
    else result FAIL "report/written" "scripts/lib/report.sh: $(tail -3 <<<"$out" | tr '\n' ' ')"; fi
fi
results_summary
[ -z "$junit" ] || junit_write boot-test "$RESULTS_FILE" "$junit"
[ "$R_FAIL" -eq 0 ]
