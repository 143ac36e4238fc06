#!/usr/bin/env bash
# vmcd as a program and as a service: command line, logs, sd_notify, socket activation, the peer
# rule, install.sh, the systemd units (verify, security exposure), the libvirt example, and the
# units under a real systemd booted in a private namespace (this machine's PID 1 is not systemd).
# Prints PASS:/FAIL:/SKIP: lines and a closing "N passed, N failed, N skipped"; exit 1 on a failure.
#   tests/service/service-checks.sh     VMC_SERVICE_KEEP=1 keeps the work directory with every log;
#                                       QEMU=<binary> installs that QEMU (else scripts/build-qemu.sh's, cached)
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib/common.sh"
. "$VMC_REPO/scripts/lib/vm.sh"      # wait_until, wait_for_socket
here="$VMC_REPO/tests/service"
cd "$VMC_REPO" || exit 1

passed=0 failed=0 skipped=0
pass() { echo "PASS: service/$1${2:+ ($2)}"; passed=$((passed + 1)); }
fail() { echo "FAIL: service/$1: $2"; failed=$((failed + 1)); }
skip() { echo "SKIP: service/$1: $2"; skipped=$((skipped + 1)); }
check() { local name=$1 why=$2; shift 2; if "$@"; then pass "$name"; else fail "$name" "$why"; fi; }

work=$(mktemp -d /tmp/vmcd-service.XXXXXX)
chmod 0711 "$work"     # the peer tests connect as another user
pids=()
ns_pid=""
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    [ -n "$ns_pid" ] && systemd_ns_stop
    if [ -n "${VMC_SERVICE_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

lines() { wc -l <"$1" | tr -d ' '; }
# stop_within SECONDS PID: SIGTERM PID (a child of this shell) and collect its exit code; a process
# still running after SECONDS is killed and reported as exit 255.
exited() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ] || ! kill -0 "$1" 2>/dev/null; }
stop_within() {
    kill -TERM "$2" 2>/dev/null
    if wait_until "$1" "" exited "$2"; then wait "$2"; else kill -KILL "$2" 2>/dev/null; wait "$2" 2>/dev/null; return 255; fi
}

apt_ensure systemd util-linux python3 libvirt-clients libxml2-utils
out=$(scripts/build-vmcd.sh) || { fail build "scripts/build-vmcd.sh failed"; echo "$passed passed, $failed failed, $skipped skipped"; exit 1; }
VMCD=$(sed -n 's/^VMCD=//p' <<<"$out" | tail -1)
log "building the reference front-end"
dotnet build tests/ReferenceFrontEnd/ReferenceFrontEnd.csproj -c Release -nologo -v q >"$work/fe-build.log" 2>&1 \
    || { cat "$work/fe-build.log" >&2; fail build "building tests/ReferenceFrontEnd failed"; echo "$passed passed, $failed failed, $skipped skipped"; exit 1; }
FE="$VMC_REPO/tests/ReferenceFrontEnd/bin/Release/net10.0/vmc-frontend"
NOTIFY="python3 $here/sdnotify.py"

# --- the command line -------------------------------------------------------------------------
"$VMCD" --print-capabilities --no-such-option >"$work/caps.json" 2>"$work/caps.err"
rc=$?
check cli/print-capabilities "not the documented JSON (exit $rc): $(head -c 300 "$work/caps.json" "$work/caps.err")" \
    python3 - "$work/caps.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
assert c["type"] == "vmc" and c["protocol"] == "vmc-user" and isinstance(c["version"], int)
assert isinstance(c["features"], list) and all(isinstance(f, str) for f in c["features"])
assert int(c["feature-bits"], 16) >= 0 and len(c["features"]) == bin(int(c["feature-bits"], 16)).count("1")
for k, lo, hi in (("max-mtu", 4096, 16384), ("pool-size", 16, 64), ("max-hmcs", 1, 2)):
    assert c[k]["min"] == lo and c[k]["max"] == hi and lo <= c[k]["default"] <= hi, k
PY

cli_error() {   # cli_error NAME EXIT REGEX ARGS...: vmcd exits EXIT with exactly one stderr line matching REGEX
    local name=$1 want=$2 re=$3; shift 3
    "$VMCD" "$@" </dev/null >"$work/$name.out" 2>"$work/$name.err"
    local rc=$? n; n=$(lines "$work/$name.err")
    if [ "$rc" = "$want" ] && [ "$n" = 1 ] && grep -qE "$re" "$work/$name.err"; then pass "cli/$name" "$(cut -c1-110 "$work/$name.err")"
    else fail "cli/$name" "exit $rc (want $want), $n stderr lines (want 1 matching /$re/): $(head -3 "$work/$name.err" | tr '\n' '|')"; fi
}
cli_error bad-option 2 "no-such-option.*vmcd --help" --no-such-option
cli_error bad-mtu 2 "max-mtu 100.*4096\.\.16384" --max-mtu 100 --socket-path "$work/x.sock"
cli_error bad-log-format 2 "log-format xml: use text or json" --log-format xml
cli_error path-and-fd 2 "either --socket-path PATH or --fd N" --socket-path "$work/x.sock" --fd 3
cli_error unknown-group 2 "allow-gid no-such-group" --allow-gid no-such-group
cli_error missing-directory 1 "directory $work/no/such does not exist; create it \(mkdir -p" --socket-path "$work/no/such/vmcd.sock"
cli_error fd-not-socket 1 "fd 0: it is not a socket" --fd 0
cli_error no-socket 1 "no socket to serve: give --socket-path" --log-level warning
printf 'cap-resp max-hmc=0\nno-such-fault x=1\n' >"$work/bad.faults"
cli_error faults-bad-line 2 "faults $work/bad.faults: line 2: .*docs/faults.md" --faults "$work/bad.faults" --socket-path "$work/x.sock"
cli_error faults-missing 2 "faults $work/none.faults: cannot read it" --faults "$work/none.faults" --socket-path "$work/x.sock"

# --- logs -------------------------------------------------------------------------------------
# run_briefly NAME ARGS...: start vmcd, wait until it listens on $work/NAME.sock, SIGTERM it; stderr in $work/NAME.log.
run_briefly() {
    local name=$1; shift
    "$VMCD" --socket-path "$work/$name.sock" "$@" 2>"$work/$name.log" &
    local p=$!
    wait_for_socket "$work/$name.sock" 5; local up=$?
    stop_within 5 $p; local rc=$?
    [ $up = 0 ] && [ $rc = 0 ]
}
run_briefly json --log-format json
check log/json "not one compact JSON event per line: $(head -2 "$work/json.log")" python3 - "$work/json.log" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
assert len(events) >= 2 and all("@t" in e and "@mt" in e for e in events)
assert any(e["@mt"].startswith("vmcd listening on") and e.get("Where") for e in events)
PY
exec 7>"$work/journal.log"
JOURNAL_STREAM="$(stat -L -c '%d:%i' /proc/self/fd/7)" "$VMCD" --socket-path "$work/journal.sock" 2>&7 &
p=$!; wait_for_socket "$work/journal.sock" 5; stop_within 5 $p; exec 7>&-
check log/journald "lines are not '<6>INF ...' without a timestamp: $(head -1 "$work/journal.log")" \
    grep -qE '^<6>INF +vmcd listening on ' "$work/journal.log"
exec 7>"$work/journal-json.log"
JOURNAL_STREAM="$(stat -L -c '%d:%i' /proc/self/fd/7)" "$VMCD" --log-format json --socket-path "$work/journal-json.sock" 2>&7 &
p=$!; wait_for_socket "$work/journal-json.sock" 5; stop_within 5 $p; exec 7>&-
check log/journald-json "lines are not '<N>' + one JSON event: $(head -1 "$work/journal-json.log")" python3 - "$work/journal-json.log" <<'PY'
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) >= 2
for l in lines:
    m = re.match(r"^<([0-7])>(\{.*)$", l)
    assert m and json.loads(m.group(2))["@t"], l
assert lines[0].startswith("<6>{")
PY
JOURNAL_STREAM="1:1" run_briefly notjournal
check log/not-journald "a JOURNAL_STREAM for another file still dropped the timestamp: $(head -1 "$work/notjournal.log")" \
    grep -qE '^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} INF +vmcd listening on ' "$work/notjournal.log"

# --- sd_notify on a socket the test provides ----------------------------------------------------
notify_case() {   # notify_case NAME ADDR
    local name=$1 addr=$2 sock="$work/$1.sock"
    $NOTIFY listen "$addr" 20 >"$work/$name.notify" &
    local listener=$!
    wait_until 20 "" grep -qs listening "$work/$name.notify" || { fail "notify/$name" "the test's notify socket did not come up within 20 s"; return; }
    NOTIFY_SOCKET=$addr "$VMCD" --socket-path "$sock" 2>"$work/$name.log" &
    local p=$!
    if ! wait_until 5 "" grep -qs 'READY=1' "$work/$name.notify"; then fail "notify/$name" "no READY=1 within 5 s"; kill $p $listener; wait $p $listener; return; fi
    [ -S "$sock" ] || { fail "notify/$name" "READY=1 before the socket existed"; kill $p $listener; wait $p $listener; return; }
    stop_within 5 $p; local rc=$?
    wait $listener; local lrc=$?
    if [ $rc = 0 ] && [ $lrc = 0 ] && grep -q 'STOPPING=1' "$work/$name.notify"; then pass "notify/$name" "$(tr '\n' ' ' <"$work/$name.notify" | cut -c1-120)"
    else fail "notify/$name" "exit $rc, listener $lrc, got: $(tr '\n' ' ' <"$work/$name.notify")"; fi
}
notify_case path "$work/notify.sock"
notify_case abstract "@vmcd-test-$$"

# --- socket activation (systemd-socket-activate plays the socket unit) ---------------------------
asock="$work/activate.sock"
$NOTIFY listen "@vmcd-activate-$$" 60 >"$work/activate.notify" &
listener=$!
wait_until 20 "" grep -qs listening "$work/activate.notify" || fail socket-activation/notify-listener "the test's notify socket did not come up within 20 s"
systemd-socket-activate -l "$asock" -E NOTIFY_SOCKET="@vmcd-activate-$$" "$VMCD" --max-hmcs 2 >"$work/activate.log" 2>&1 &
act=$!; pids+=("$act")
if wait_for_socket "$asock" 5 && "$FE" --socket "$asock" --seconds 2 --hmcs 2 >"$work/activate.fe" 2>&1; then
    pass socket-activation/loopback "$(tail -1 "$work/activate.fe")"
else
    fail socket-activation/loopback "$(tail -n 3 "$work/activate.fe" "$work/activate.log" | tr '\n' '|')"
fi
check socket-activation/ready "no READY=1 naming the passed fd: $(cat "$work/activate.notify")" \
    grep -q 'READY=1;STATUS=listening on fd 3 (socket activation)' "$work/activate.notify"
check socket-activation/no-own-socket "vmcd created a socket of its own" grep -q 'vmcd listening on fd 3 (socket activation)' "$work/activate.log"
stop_within 5 "$act"; rc=$?; wait $listener
check socket-activation/stop "SIGTERM: exit $rc (255: still running 5 s later), notify: $(tr '\n' ' ' <"$work/activate.notify")" \
    test "$rc" = 0 -a "$(grep -c 'STOPPING=1' "$work/activate.notify")" = 1

# --- --fd: a listening socket inherited on an fd of the caller's choosing --------------------------
python3 - "$work/fd.sock" "$VMCD" 2>"$work/fd.log" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(16)
os.dup2(s.fileno(), 7)          # dup2 leaves fd 7 inheritable
os.execv(sys.argv[2], [sys.argv[2], "--fd", "7"])
PY
fdp=$!; pids+=("$fdp")
if wait_for_socket "$work/fd.sock" 5 && "$FE" --socket "$work/fd.sock" --seconds 1 >"$work/fd.fe" 2>&1 \
        && grep -q 'vmcd listening on fd 7' "$work/fd.log"; then pass fd/loopback "$(tail -1 "$work/fd.fe")"
else fail fd/loopback "$(tail -n 2 "$work/fd.fe" "$work/fd.log" | tr '\n' '|')"; fi
stop_within 5 "$fdp"; rc=$?
check fd/stop "SIGTERM: exit $rc" test "$rc" = 0

# --- the peer rule: root, vmcd's own uid, --allow-uid, --allow-gid -------------------------------
peer_case() {   # peer_case NAME EXPECT(served|refused) SETPRIV-ARGS -- VMCD-ARGS...
    local name=$1 expect=$2 priv=$3; shift 4
    local sock="$work/peer-$name.sock"
    systemd-socket-activate -l "$sock" "$VMCD" "$@" >"$work/peer-$name.log" 2>&1 &
    local a=$!
    wait_for_socket "$sock" 5; chmod 0666 "$sock"    # the file mode is not what this checks
    # shellcheck disable=SC2086
    timeout 60 setpriv $priv "$FE" --socket "$sock" --seconds 1 >"$work/peer-$name.fe" 2>&1; local rc=$?
    stop_within 5 $a
    if [ "$expect" = served ] && [ $rc = 0 ]; then pass "peer/$name" "served"
    elif [ "$expect" = refused ] && [ $rc != 0 ] && grep -q "refused a front-end: pid [0-9]* runs as uid 65534" "$work/peer-$name.log"; then
        pass "peer/$name" "$(grep -o 'refused a front-end.*' "$work/peer-$name.log" | head -1 | cut -c1-100)"
    else fail "peer/$name" "expected $expect; front-end exit $rc: $(tail -n 2 "$work/peer-$name.fe" "$work/peer-$name.log" | tr '\n' '|')"; fi
}
nobody="--reuid=65534 --regid=65534 --clear-groups"
peer_case other-user refused "$nobody" --
peer_case allow-uid served "$nobody" -- --allow-uid 65534
peer_case allow-gid-primary served "$nobody" -- --allow-gid 65534
peer_case allow-gid-supplementary served "--reuid=65534 --regid=65534 --groups=4242" -- --allow-gid 4242
peer_case root served "" --

# --- install.sh into a temporary prefix --------------------------------------------------------
prefix="$work/prefix"
if [ -z "${QEMU:-}" ]; then
    QEMU=$(scripts/build-qemu.sh 2>"$work/qemu-build.log" | sed -n 's/^QEMU=//p' | tail -1)
    [ -n "$QEMU" ] || fail install/qemu-build "scripts/build-qemu.sh failed: $(tail -n 2 "$work/qemu-build.log" | tr '\n' '|')"
fi
if [ -n "$QEMU" ] && QEMU=$QEMU scripts/install.sh --prefix "$prefix" >"$work/install.log" 2>&1; then
    check install/files "missing: $(cd "$prefix" && for f in libexec/vmcd bin/qemu-system-ppc64 lib/systemd/system/vmcd.socket lib/systemd/system/vmcd.service share/qemu/vhost-user/50-vmcd.json share/doc/vmcd/README.md; do [ -e "$f" ] || echo "$f"; done)" \
        test -x "$prefix/libexec/vmcd" -a -x "$prefix/bin/qemu-system-ppc64" -a -f "$prefix/lib/systemd/system/vmcd.socket" \
             -a -f "$prefix/lib/systemd/system/vmcd.service" -a -f "$prefix/share/qemu/vhost-user/50-vmcd.json" -a -f "$prefix/share/doc/vmcd/README.md"
    check install/descriptor "50-vmcd.json is not a descriptor for the installed binary: $(cat "$prefix/share/qemu/vhost-user/50-vmcd.json")" \
        python3 -c 'import json,os,sys; d=json.load(open(sys.argv[1])); assert d["type"]=="vmc" and d["description"] and d["binary"]==sys.argv[2] and os.access(d["binary"], os.X_OK)' \
        "$prefix/share/qemu/vhost-user/50-vmcd.json" "$prefix/libexec/vmcd"
    check install/units-point-at-prefix "ExecStart is not $prefix/libexec/vmcd" grep -q "^ExecStart=$prefix/libexec/vmcd " "$prefix/lib/systemd/system/vmcd.service"
    check install/qemu "the installed QEMU has no spapr-vmc device" sh -c "'$prefix/bin/qemu-system-ppc64' -device help 2>/dev/null | grep -q '\"spapr-vmc\"'"
    check install/refuses-unpatched-qemu "install.sh accepted a QEMU without spapr-vmc" \
        sh -c "! QEMU=/bin/true scripts/install.sh --prefix '$work/prefix-bad' >'$work/install-bad.log' 2>&1 && grep -q 'has no spapr-vmc device' '$work/install-bad.log'"
else
    fail install/run "scripts/install.sh failed: $(tail -n 3 "$work/install.log" 2>/dev/null | tr '\n' '|')"
fi
units="$prefix/lib/systemd/system"

# --- the units, offline ------------------------------------------------------------------------
if systemd-analyze verify "$units/vmcd.socket" "$units/vmcd.service" >"$work/verify.log" 2>&1 && ! grep -q . "$work/verify.log"; then
    pass units/verify
else
    fail units/verify "$(head -5 "$work/verify.log" | tr '\n' '|')"
fi
systemd-analyze security --offline=true --no-pager "$units/vmcd.service" >"$work/security.log" 2>&1
exposure=$(sed -n 's/.*Overall exposure level for vmcd.service: \([0-9.]*\).*/\1/p' "$work/security.log")
if [ -z "$exposure" ]; then fail units/security-exposure "no exposure figure: $(tail -3 "$work/security.log" | tr '\n' '|')"
elif python3 -c "import sys; sys.exit(0 if float('$exposure') <= 2.0 else 1)"; then pass units/security-exposure "exposure $exposure, goal <= 2.0"
else fail units/security-exposure "exposure $exposure above 2.0: $(grep '✗' "$work/security.log" | head -5 | tr '\n' '|')"; fi

# --- the libvirt domain example ----------------------------------------------------------------
check libvirt/example-validates "$(virt-xml-validate docs/examples/vmcd-domain.xml domain 2>&1 | tail -2 | tr '\n' '|')" \
    sh -c 'virt-xml-validate docs/examples/vmcd-domain.xml domain >/dev/null 2>&1'

# --- the units under a real systemd (PID 1 of a private namespace) -----------------------------
# shellcheck source=tests/service/systemd-ns.sh
. "$here/systemd-ns.sh"
# The service's own view hides /tmp, /var/tmp and /home: stage a default-prefix install and let the
# namespace mount it on /usr/local.
if ! scripts/install.sh --destdir "$work/stage" --without-qemu >"$work/stage.log" 2>&1; then
    fail systemd/stage "scripts/install.sh --destdir failed: $(tail -2 "$work/stage.log" | tr '\n' '|')"
elif ! systemd_ns_start "$work/stage" "$work/ns"; then
    skip systemd "systemd did not come up in a private namespace here ($ns_error); the units were checked offline only"
else
    nsx() { nsenter -t "$ns_pid" -m -p "$@"; }
    sock=/run/vmcd/vmcd.sock
    check systemd/socket-listening "vmcd.socket is not listening: $(nsx systemctl is-active vmcd.socket)" \
        sh -c "[ \"\$(nsenter -t $ns_pid -m -p systemctl is-active vmcd.socket)\" = active ]"
    check systemd/socket-mode "$sock is $(nsx stat -c '%A %U:%G' $sock), want srw-rw---- root:kvm" \
        test "$(nsx stat -c '%A %U:%G' $sock)" = "srw-rw---- root:kvm"
    check systemd/not-started-before-use "vmcd.service runs before anything connected" \
        test "$(nsx systemctl is-active vmcd.service)" = inactive
    if nsx "$FE" --socket $sock --seconds 2 --hmcs 1 >"$work/ns-fe.out" 2>&1; then pass systemd/loopback "$(tail -1 "$work/ns-fe.out")"
    else fail systemd/loopback "$(tail -3 "$work/ns-fe.out" | tr '\n' '|'); $(nsx journalctl -u vmcd --no-pager -n 5 2>&1 | tr '\n' '|')"; fi
    mainpid=$(nsx systemctl show -P MainPID vmcd.service)
    check systemd/ready "vmcd.service is not active with vmcd's STATUS: $(nsx systemctl show -P ActiveState -P StatusText vmcd.service | tr '\n' ' ')" \
        test "$(nsx systemctl show -P ActiveState vmcd.service)/$(nsx systemctl show -P StatusText vmcd.service)" = "active/listening on fd 3 (socket activation)"
    st=$(nsx cat "/proc/$mainpid/status" 2>/dev/null)
    uid=$(awk '/^Uid:/ {print $2}' <<<"$st")
    check systemd/sandbox "the process is not confined as the unit says: $(grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' <<<"$st" | tr '\n\t' '  ')" \
        test -n "$uid" -a "$uid" != 0 -a "$(awk '/^CapEff:/ {print $2}' <<<"$st")" = 0000000000000000 \
             -a "$(awk '/^NoNewPrivs:/ {print $2}' <<<"$st")" = 1 -a "$(awk '/^Seccomp:/ {print $2}' <<<"$st")" = 2 \
             -a "$(nsx readlink /proc/"$mainpid"/ns/net)" != "$(readlink /proc/self/ns/net)"
    check systemd/journal "vmcd's lines are not in the journal with their priority: $(nsx journalctl -u vmcd -o short --no-pager -n 3 2>&1 | tr '\n' '|')" \
        sh -c "nsenter -t $ns_pid -m -p journalctl -u vmcd.service -p info --no-pager -o cat 2>/dev/null | grep -q '^INF  vmcd listening on fd 3' && \
               ! nsenter -t $ns_pid -m -p journalctl -u vmcd.service -p notice --no-pager -o cat 2>/dev/null | grep -q 'INF '"
    if nsx setpriv --reuid=65534 --regid=65534 --groups="$ns_kvm_gid" "$FE" --socket $sock --seconds 1 >"$work/ns-kvm.out" 2>&1; then pass systemd/kvm-member-served
    else fail systemd/kvm-member-served "$(tail -2 "$work/ns-kvm.out" | tr '\n' '|')"; fi
    if nsx setpriv --reuid=65534 --regid=65534 --clear-groups "$FE" --socket $sock --seconds 1 >"$work/ns-other.out" 2>&1; then fail systemd/other-user-refused "a front-end outside group kvm was served"
    else check systemd/other-user-refused "$(tail -1 "$work/ns-other.out")" grep -q "Permission denied" "$work/ns-other.out"; fi
    t0=$(date +%s%N); nsx systemctl stop vmcd.service 2>/dev/null; t1=$(date +%s%N)
    check systemd/stop "stop took $(( (t1 - t0) / 1000000 )) ms, state $(nsx systemctl show -P ActiveState -P Result vmcd.service | tr '\n' ' ')" \
        test "$(nsx systemctl show -P ActiveState vmcd.service)/$(nsx systemctl show -P Result vmcd.service)" = "inactive/success" -a $(( (t1 - t0) / 1000000 )) -lt 5000
    if nsx "$FE" --socket $sock --seconds 1 >"$work/ns-again.out" 2>&1 && [ "$(nsx systemctl is-active vmcd.service)" = active ]; then
        pass systemd/reactivation "the socket activated vmcd again after the stop"
    else fail systemd/reactivation "$(tail -2 "$work/ns-again.out" | tr '\n' '|')"; fi
    systemd_ns_stop
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
