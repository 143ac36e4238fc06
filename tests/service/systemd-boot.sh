#!/usr/bin/env bash
# Runs inside `unshare --mount --pid --fork --cgroup` (tests/service/service-checks.sh starts it): boots the
# host's own systemd as PID 1 of a private PID and mount namespace that sees only the units in
# UNITDIR, so vmcd.socket/vmcd.service run under the real service manager and their real sandbox
# on a machine whose PID 1 is not systemd. Nothing of it is visible outside the namespace: /run,
# the unit directories, /var/log/journal and /etc/group are replaced by private copies here.
#   systemd-boot.sh UNITDIR GROUPFILE TARGET USRLOCAL
# USRLOCAL (a staged install, scripts/install.sh --destdir) is mounted on /usr/local.
set -euo pipefail
unitdir=$1 groupfile=$2 target=$3 usrlocal=$4
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/system
mount -t tmpfs -o mode=0755 tmpfs /usr/lib/systemd/system
[ -d /var/log/journal ] && mount -t tmpfs -o mode=0755 tmpfs /var/log/journal
cp -r "$unitdir"/. /etc/systemd/system/
mount --bind "$groupfile" /etc/group
mount --bind "$usrlocal" /usr/local
mount -t proc proc /proc
export container=vmcd-test
exec /lib/systemd/systemd --system --unit="$target" --log-target=journal --log-level=notice
