#!/usr/bin/env bash
# Guest boot tests: the upstream ibmvmc driver in a pseries guest talking to vmcd through the
# patched QEMU, on every kernel of the matrix. Builds whatever is missing, runs each scenario in
# its own VM and prints one line per check, the kernel first:
#   PASS: 6.12/basic/echo-4064    FAIL: 6.1/restart/completed: why    XFAIL: ...: known driver bug
# and a closing "N passed, N failed, N xfailed, N skipped" line; exits non-zero on any FAIL.
#
#   scripts/boot-test.sh [options] [scenario...]    scenarios: basic params twohmc restart reset
#     --kernel 6.1|6.12         one kernel of the matrix (default: both)
#     --driver-src DIR          your ibmvmc.c/ibmvmc.h, built against each kernel's headers
#     --kernel-image FILE [--modules-dir DIR]   your own ppc64le kernel (see build-guest.sh)
#     --junit FILE              also write the results as JUnit XML
#   BOOT_TIMEOUT=seconds per boot (180)
# Every boot has slub_debug=FZPU (6.12 also KFENCE); /init validates the slab caches before power
# off, and any kernel report fails the scenario, unless it is a known driver bug
# (tests/guest/known-driver-bugs), which is reported as XFAIL.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$VMC_REPO/scripts/lib/vm.sh"
. "$VMC_REPO/scripts/lib/results.sh"

kernels="" guest_opts=() junit="" scenarios=()
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) kernels+=" ${2:?--kernel needs 6.1 or 6.12}"; shift ;;
        --driver-src|--modules-dir) guest_opts+=("$1" "${2:?$1 needs a directory}"); shift ;;
        --kernel-image) guest_opts+=("$1" "${2:?$1 needs a file}"); kernels=image; shift ;;
        --junit) junit=${2:?--junit needs a file}; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (try --help)" ;;
        *) scenarios+=("$1") ;;
    esac
    shift
done
kernels=${kernels:-"6.1 6.12"}
for k in $kernels; do case $k in 6.1|6.12|image) ;; *) die "--kernel $k: choose 6.1 or 6.12" ;; esac; done
[ ${#scenarios[@]} -gt 0 ] || scenarios=(basic params twohmc restart reset)
for sc in "${scenarios[@]}"; do
    case $sc in basic|params|twohmc|restart|reset) ;; *) die "unknown scenario $sc (basic params twohmc restart reset)" ;; esac
done

BOOT_TIMEOUT=${BOOT_TIMEOUT:-180}
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
                result PASS "$k/$sc/$pre$name" ;;
            *"VMCTEST FAIL "*) rest=${line#*VMCTEST FAIL }; name=${rest%% *}
                result FAIL "$k/$sc/$pre$name" "${rest#"$name" }" ;;
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

# scenario LABEL NAME "VMCD-ARGS" "KERNEL-APPEND"
scenario() {
    local k=$1 sc=$2 vargs=$3 append=$4 sock="$work/$1-$2.sock" con="$work/$1-$2.console" start=$SECONDS
    log "scenario $k/$sc"
    # shellcheck disable=SC2086
    vmcd_start "$sock" "$work/$k-$sc.vmcd.log" $vargs
    qemu_start "$sock" "$append" "$con" "$BOOT_TIMEOUT"
    wait "$QEMU_PID" 2>/dev/null
    report "$k" "$sc" "$con"
    vm_cleanup
    log "scenario $k/$sc took $((SECONDS - start)) s"
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
    wait "$QEMU_PID" 2>/dev/null
    report "$k" "$sc" "$con"
    vm_cleanup
    log "scenario $k/$sc took $((SECONDS - start)) s"
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
    report "$k" "$sc" "$con"
    vm_cleanup
    log "scenario $k/$sc took $((SECONDS - start)) s"
}

t0=$SECONDS
vm_tools
for k in $kernels; do
    kopts=("${guest_opts[@]}")
    [ "$k" = image ] || kopts+=(--kernel "$k")
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
        esac
    done
done
log "boot tests took $((SECONDS - t0)) s; logs in $work"
results_summary
[ -z "$junit" ] || junit_write boot-test "$RESULTS_FILE" "$junit"
[ "$R_FAIL" -eq 0 ]
