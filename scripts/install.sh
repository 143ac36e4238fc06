#!/usr/bin/env bash
# Install vmcd (NativeAOT), its systemd units, its vhost-user-style descriptor and the patched QEMU.
#   scripts/install.sh [--prefix DIR] [--destdir DIR] [--without-qemu]
# Layout under the prefix (default /usr/local):
#   libexec/vmcd                                  the daemon (back-end program conventions)
#   bin/qemu-system-ppc64                         QEMU with the spapr-vmc device (scripts/build-qemu.sh)
#   lib/systemd/system/vmcd.socket, vmcd.service  socket-activated, sandboxed service
#   share/qemu/vhost-user/50-vmcd.json            back-end descriptor for management software
#   share/doc/vmcd/                               README.md, protocol.md, libvirt example
# QEMU=<binary> in the environment installs that (patched) binary instead of running build-qemu.sh.
# --destdir stages the files under DIR (DIR/PREFIX/...) with paths inside them still naming PREFIX,
# for packaging. Then, as root with systemd: systemctl daemon-reload && systemctl enable --now vmcd.socket
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

prefix=/usr/local
destdir=""
qemu=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        --destdir) [ $# -ge 2 ] || { echo "install.sh: --destdir needs a directory" >&2; exit 2; }; destdir=$2; shift 2 ;;
        --destdir=*) destdir=${1#--destdir=}; shift ;;
        --without-qemu) qemu=no; shift ;;
        -h|--help) sed -n '2,14s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (usage: scripts/install.sh [--prefix DIR] [--destdir DIR] [--without-qemu])" >&2; exit 2 ;;
    esac
done
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
prefix=${prefix%/}
if [ -n "$destdir" ]; then case "$destdir" in /*) ;; *) destdir="$PWD/$destdir" ;; esac; destdir=${destdir%/}; fi

out=$("$VMC_REPO/scripts/build-vmcd.sh") || die "building vmcd failed (see above)"
vmcd=$(sed -n 's/^VMCD=//p' <<<"$out" | tail -1)
if [ "$qemu" = yes ] && [ -n "${QEMU:-}" ]; then
    qemu_bin=$QEMU      # already built (scripts/test.sh passes it on)
elif [ "$qemu" = yes ]; then
    out=$("$VMC_REPO/scripts/build-qemu.sh") || die "building QEMU failed (see above; --without-qemu installs vmcd only)"
    qemu_bin=$(sed -n 's/^QEMU=//p' <<<"$out" | tail -1)
fi
if [ "$qemu" = yes ]; then
    "$qemu_bin" -device help 2>/dev/null | grep -q '"spapr-vmc"' \
        || die "$qemu_bin has no spapr-vmc device: not the patched QEMU (unset QEMU, or give scripts/build-qemu.sh's QEMU=)"
fi

dist="$VMC_REPO/src/Vmcd/dist"
libexecdir="$prefix/libexec"
unitdir="$prefix/lib/systemd/system"
descdir="$prefix/share/qemu/vhost-user"
docdir="$prefix/share/doc/vmcd"
d=$destdir
log "installing into $d$prefix"
install -d "$d$libexecdir" "$d$unitdir" "$d$descdir" "$d$docdir"
install -m 0755 "$vmcd" "$d$libexecdir/vmcd"
# render SRC DEST: the file with @libexecdir@/@docdir@ replaced by the installed paths, mode 0644.
render() {
    sed -e "s|@libexecdir@|$libexecdir|g" -e "s|@docdir@|$docdir|g" "$1" >"$2.tmp" && chmod 0644 "$2.tmp" && mv "$2.tmp" "$2"
}
render "$dist/vmcd.socket" "$d$unitdir/vmcd.socket"
render "$dist/vmcd.service" "$d$unitdir/vmcd.service"
render "$dist/50-vmcd.json" "$d$descdir/50-vmcd.json"
install -m 0644 "$VMC_REPO/README.md" "$VMC_REPO/docs/protocol.md" "$VMC_REPO/docs/examples/vmcd-domain.xml" "$d$docdir/"
if [ "$qemu" = yes ]; then
    install -d "$d$prefix/bin"
    install -m 0755 "$qemu_bin" "$d$prefix/bin/qemu-system-ppc64"
fi
"$d$libexecdir/vmcd" --print-capabilities >/dev/null || die "the installed $d$libexecdir/vmcd does not run"
echo "installed into $d$prefix: libexec/vmcd, lib/systemd/system/vmcd.{socket,service}, share/qemu/vhost-user/50-vmcd.json, share/doc/vmcd${qemu_bin:+, bin/qemu-system-ppc64}"
