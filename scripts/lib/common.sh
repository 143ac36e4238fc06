# Shared helpers for VmcBackend scripts. Source it: . "$(dirname "$0")/lib/common.sh"
# shellcheck shell=bash

VMC_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Everything fetched or built from third-party sources lives here, outside the clone.
VMC_CACHE=${VMC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmcbackend}
mkdir -p "$VMC_CACHE"

log()  { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

# Serialise apt/dpkg use between scripts that run at the same time.
with_apt_lock() {
    flock -w 1800 /var/lock/vmcbackend-apt.lock "$@"
}

apt_updated=0
apt_update_once() {
    if [ "$apt_updated" = 0 ]; then
        with_apt_lock apt-get -o DPkg::Lock::Timeout=600 update -qq || die "apt-get update failed"
        apt_updated=1
    fi
}

# apt_ensure PKG... : install the packages that are missing (quietly).
apt_ensure() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    apt_update_once
    with_apt_lock env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
        install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

# hash_inputs FILE|DIR... : short stable hash of the contents and names of files (dirs recursed,
# sorted). Names inside the clone are hashed relative to it, so the key does not depend on where
# the clone lives.
hash_inputs() {
    { find "$@" -type f -print0 2>/dev/null || true; } | sort -z | xargs -0 -r sha256sum \
        | sed "s|  $VMC_REPO/|  |" | sha256sum | cut -c1-16
}
