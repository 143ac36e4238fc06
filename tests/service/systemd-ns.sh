# shellcheck shell=bash
# shellcheck disable=SC2034  # ns_* are read by the script that sources this
# Boot systemd as PID 1 of a private PID + mount (+ cgroup) namespace with only vmcd's units and
# journald, for tests on machines whose PID 1 is not systemd. Source it; then
#   systemd_ns_start STAGE WORKDIR     STAGE: scripts/install.sh --destdir STAGE (default prefix /usr/local);
#                                      sets ns_pid (systemd, as seen from here) and ns_kvm_gid; 1 + ns_error on failure
#   systemd_ns_stop                    kills the namespace (every process in it) and removes its cgroups
# Nothing is written outside WORKDIR except the namespace's own cgroup directories (removed again).

systemd_ns_start() {
    local stage=$1/usr/local dir=$2 g
    ns_pid="" ns_error="" ns_cgroups=()
    if ! command -v unshare >/dev/null || ! command -v nsenter >/dev/null; then ns_error="unshare/nsenter missing"; return 1; fi
    [ -x /lib/systemd/systemd ] || { ns_error="/lib/systemd/systemd missing"; return 1; }
    mkdir -p "$dir/units"
    cp "$stage/lib/systemd/system/vmcd.socket" "$stage/lib/systemd/system/vmcd.service" "$dir/units/"
    # The host's journald, so that vmcd's stderr goes where it goes on a real system.
    for g in systemd-journald.service systemd-journald.socket systemd-journald-dev-log.socket; do
        [ -f "/lib/systemd/system/$g" ] && cp "/lib/systemd/system/$g" "$dir/units/"
    done
    # Stand-ins for the boot targets the units order against (the real ones would start the host's boot).
    for g in sysinit basic sockets shutdown local-fs paths timers slices; do
        printf '[Unit]\nDescription=%s (test namespace)\n' "$g" >"$dir/units/$g.target"
    done
    printf '[Unit]\nDescription=vmcd test namespace\nWants=systemd-journald.service vmcd.socket\n' >"$dir/units/vmcd-test.target"
    # A kvm group (the socket's SocketGroup=) exists on hosts with KVM; give the namespace one if this one has none.
    cp /etc/group "$dir/group"
    ns_kvm_gid=$(awk -F: '$1 == "kvm" {print $3}' /etc/group)
    if [ -z "$ns_kvm_gid" ]; then
        ns_kvm_gid=4990
        while getent group "$ns_kvm_gid" >/dev/null; do ns_kvm_gid=$((ns_kvm_gid + 1)); done
        echo "kvm:x:$ns_kvm_gid:" >>"$dir/group"
    fi
    # Own cgroups, so that the namespace's systemd builds its tree below them and they can be removed.
    for g in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
        if [ -f "$g/cgroup.procs" ] && mkdir "$g/vmcd-test.$$" 2>/dev/null; then ns_cgroups+=("$g/vmcd-test.$$"); fi
    done
    (
        for g in "${ns_cgroups[@]}"; do echo "$BASHPID" >"$g/cgroup.procs" 2>/dev/null; done
        exec unshare --mount --pid --fork --cgroup "$VMC_REPO/tests/service/systemd-boot.sh" "$dir/units" "$dir/group" vmcd-test.target "$stage"
    ) >"$dir/boot.log" 2>&1 &
    ns_unshare=$!
    for _ in $(seq 250); do
        ns_pid=$(pgrep -P "$ns_unshare" -x systemd 2>/dev/null | head -1)
        if [ -n "$ns_pid" ] && [ "$(nsenter -t "$ns_pid" -m -p systemctl is-active vmcd.socket 2>/dev/null)" = active ]; then
            return 0
        fi
        kill -0 "$ns_unshare" 2>/dev/null || break
        sleep 0.02
    done
    ns_error="vmcd.socket not active within 5 s: $(tail -3 "$dir/boot.log" | tr '\n' '|')"
    systemd_ns_stop
    return 1
}

systemd_ns_stop() {
    local g
    [ -n "${ns_unshare:-}" ] && { kill -KILL "$ns_unshare" 2>/dev/null; [ -n "$ns_pid" ] && kill -KILL "$ns_pid" 2>/dev/null; wait "$ns_unshare" 2>/dev/null; }
    # The kernel ends every process of the PID namespace with its PID 1; then its cgroups are empty.
    for g in "${ns_cgroups[@]}"; do
        for _ in $(seq 100); do find "$g" -depth -type d -exec rmdir {} \; 2>/dev/null; [ -d "$g" ] || break; sleep 0.02; done
    done
    ns_pid="" ns_unshare="" ns_cgroups=()
}
