#!/usr/bin/env bash
# The private apt root (scripts/lib/apt.sh) against copies of typical host configurations:
# deb822 .sources with and without a final newline, a classic sources.list, a mirror behind a
# vendor repository and a disabled stanza. For each: the archive URLs taken from it, the host
# files byte-identical afterwards; the Debian configurations must give the same private list and
# the packages the guest and QEMU builds need must resolve through it; a failing index is
# tolerated and a missing package names itself and its suites. The real /etc/apt and dpkg's
# foreign architectures must be unchanged at the end.
# Prints "PASS: apt/..." / "FAIL: apt/...: why" and a closing count.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib/common.sh"
. "$VMC_REPO/scripts/lib/apt.sh"
. "$VMC_REPO/scripts/lib/results.sh"

work=$(mktemp -d /tmp/vmc-apttest.XXXXXX)
trap 'rm -rf "$work"' EXIT
host_state() { { find /etc/apt -type f -print0 | sort -z | xargs -0 sha256sum; dpkg --print-foreign-architectures; } | sha256sum; }
host_before=$(host_state)
key=/usr/share/keyrings/debian-archive-keyring.gpg

# --- fixtures: one etc/apt tree per case ------------------------------------------------------
mk() { mkdir -p "$work/$1/sources.list.d"; }
mk deb822
cat >"$work/deb822/sources.list.d/debian.sources" <<EOF
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: $key

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: $key
EOF
mk deb822-no-newline
printf '%s' "$(cat "$work/deb822/sources.list.d/debian.sources")" >"$work/deb822-no-newline/sources.list.d/debian.sources"
mk classic
cat >"$work/classic/sources.list" <<EOF
# classic one-line format
deb [signed-by=$key] http://deb.debian.org/debian/ bookworm main contrib
deb-src http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security/ bookworm-security main
EOF
mk mirror
cat >"$work/mirror/sources.list.d/aaa-vendor.sources" <<'EOF'
Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
EOF
cat >"$work/mirror/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://old.example.org/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb deb-src
URIs: http://mirror.example.org/debian/
Suites: bookworm bookworm-updates
Components: main
EOF
cat >"$work/mirror/sources.list" <<'EOF'
deb http://security.example.org/debian-security bookworm-security main
EOF

declare -A want_main=([deb822]=http://deb.debian.org/debian [deb822-no-newline]=http://deb.debian.org/debian
    [classic]=http://deb.debian.org/debian [mirror]=http://mirror.example.org/debian)
declare -A want_sec=([deb822]=http://deb.debian.org/debian-security [deb822-no-newline]=http://deb.debian.org/debian-security
    [classic]=http://deb.debian.org/debian-security [mirror]=http://security.example.org/debian-security)

for c in deb822 deb822-no-newline classic mirror; do
    before=$(cd "$work/$c" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    m=$(PAPT_HOST_ETC="$work/$c" papt_host_archive main); s=$(PAPT_HOST_ETC="$work/$c" papt_host_archive security)
    if [ "$m" = "${want_main[$c]}" ] && [ "$s" = "${want_sec[$c]}" ]; then result PASS "apt/$c/archive-urls" "$m $s"
    else result FAIL "apt/$c/archive-urls" "got '$m' '$s', want '${want_main[$c]}' '${want_sec[$c]}'"; fi
    PAPT_HOST_ETC="$work/$c" papt_sources >"$work/$c.list"
    if grep -q "^deb \[arch=amd64,ppc64el signed-by=$key\] ${want_main[$c]} bookworm-backports main$" "$work/$c.list" \
        && grep -q "^deb-src \[signed-by=$key\] ${want_main[$c]} trixie main$" "$work/$c.list" \
        && grep -q "^deb \[arch=amd64,ppc64el signed-by=$key\] ${want_sec[$c]} bookworm-security main$" "$work/$c.list"; then
        result PASS "apt/$c/private-list"
    else
        result FAIL "apt/$c/private-list" "$(tr '\n' '|' <"$work/$c.list")"
    fi
    after=$(cd "$work/$c" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    [ "$before" = "$after" ] && result PASS "apt/$c/host-files-untouched" || result FAIL "apt/$c/host-files-untouched" "the copy of $c changed"
done
if cmp -s "$work/deb822.list" "$work/deb822-no-newline.list" && cmp -s "$work/deb822.list" "$work/classic.list"; then
    result PASS "apt/debian-configs-give-one-private-list"
else
    result FAIL "apt/debian-configs-give-one-private-list" "$(diff "$work/deb822.list" "$work/classic.list" | head -3 | tr '\n' ' ')"
fi

# --- the packages resolve through a private root made from the image's configuration ---------
export PAPT_HOST_ETC="$work/deb822" PAPT_ROOT="$work/root"
if ( papt_update ) 2>"$work/update.err"; then
    ok=1 miss=""
    for re in '^linux-image-6\.1\.0-[0-9]+-powerpc64le$' '^linux-image-6\.12\.[0-9]+\+deb12-powerpc64le$'; do
        (papt_newest "$re") >/dev/null 2>&1 || { ok=0; miss+=" $re"; }
    done
    for p in busybox-static:ppc64el linux-source-6.1 linux-source-6.12 gcc-12:ppc64el; do
        (papt_candidate "$p") >/dev/null 2>&1 || { ok=0; miss+=" $p"; }
    done
    srcs=$(papt_cache showsrc qemu 2>/dev/null)    # (not piped into grep -q: pipefail would see SIGPIPE)
    grep -qE '^Version: 1:(7\.2|10\.0)' <<<"$srcs" || { ok=0; miss+=" qemu-source"; }
    [ "$ok" = 1 ] && result PASS "apt/needed-packages-resolve" "kernels 6.1/6.12, busybox, linux-source, qemu source" \
        || result FAIL "apt/needed-packages-resolve" "missing:$miss (update log $PAPT_ROOT/update.log)"
else
    result FAIL "apt/needed-packages-resolve" "papt_update failed: $(tail -2 "$work/update.err")"
fi

# A failing index (a suite the archive does not have) is tolerated; what is missing names itself.
mkdir -p "$work/root2"; cp -a "$work/root/lists" "$work/root2/" 2>/dev/null
export PAPT_ROOT="$work/root2"
if ( PAPT_SUITES_BIN="bookworm bookworm-vmcbackend-does-not-exist"; papt_update && papt_candidate busybox-static:ppc64el ) \
        >"$work/fail.out" 2>"$work/fail.err" \
    && grep -q 'bookworm-vmcbackend-does-not-exist' "$PAPT_ROOT/update.log" && grep -q 'reported errors' "$work/fail.err"; then
    result PASS "apt/failing-index-tolerated" "busybox-static $(tail -1 "$work/fail.out") still resolves"
else
    result FAIL "apt/failing-index-tolerated" "$(tail -3 "$work/fail.err" | tr '\n' ' ')"
fi
msg=$( (papt_candidate vmcbackend-no-such-package:ppc64el "bookworm-backports") 2>&1 )
if [[ "$msg" == *"vmcbackend-no-such-package:ppc64el"*"bookworm-backports"* ]]; then
    result PASS "apt/missing-package-named" "$msg"
else
    result FAIL "apt/missing-package-named" "got: $msg"
fi
unset PAPT_HOST_ETC PAPT_ROOT

[ "$(host_state)" = "$host_before" ] && result PASS "apt/host-etc-apt-and-foreign-architectures-unchanged" \
    || result FAIL "apt/host-etc-apt-and-foreign-architectures-unchanged" "/etc/apt or dpkg --print-foreign-architectures changed during the test"
results_summary
[ "$R_FAIL" -eq 0 ]
