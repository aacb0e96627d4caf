#!/usr/bin/env bash
# Make sure a base image for docker/Dockerfile exists; print its reference on stdout.
#
#   base=$(docker/base.sh)            # then SALTSEG_BASE_IMAGE=$base docker/build.sh
#
# The Dockerfile's default base (the official Python 3.11 image) when it is on this machine or a
# registry serves it; otherwise a local Debian 12 "bookworm" base with Python 3.11
# (python3-venv, python-is-python3, ca-certificates, and this host's extra CA certificates, so
# that pip in the build trusts what pip on the host trusts), made by mmdebstrap from Debian's
# mirror and kept as a tarball in the cache folder. Used by docker/test.sh and
# bench/docker_gpu_image.py.
#
# Environment (and DOCKER, CONTAINERS_CONF: see docker/params.sh):
#   SALTSEG_TEST_BASE          auto (default), official or local (mmdebstrap)
#   SALTSEG_DEBIAN_MIRROR      Debian mirror (default http://deb.debian.org/debian)
#   SALTSEG_DOCKER_TEST_CACHE  cache folder (default ${XDG_CACHE_HOME:-~/.cache}/saltseg-docker-test)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=params.sh
source "$here/params.sh"

die() {
    echo "docker/base.sh: error: $*" >&2
    exit 1
}
say() {
    echo "docker/base.sh: $*" >&2
}

saltseg_check_engine docker/base.sh || exit 1
cache=${SALTSEG_DOCKER_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/saltseg-docker-test}
mkdir -p "$cache" || die "cannot create the cache folder $cache"

image_exists() { # REF
    "$DOCKER" image inspect "$1" >/dev/null 2>&1
}

official=$(sed -n 's/^ARG BASE_IMAGE=//p' "$here/Dockerfile")
[ -n "$official" ] || die "$here/Dockerfile: no 'ARG BASE_IMAGE=' default found"
mode=${SALTSEG_TEST_BASE:-auto}
case $mode in
auto)
    if image_exists "$official"; then
        mode=official
    elif timeout 120 "$DOCKER" pull --quiet "$official" >/dev/null 2>&1; then
        mode=official
    else
        say "no registry serves $official here: a local Debian bookworm base (mmdebstrap)"
        mode=local
    fi
    ;;
official)
    image_exists "$official" || "$DOCKER" pull "$official" >&2 || die "cannot pull $official"
    ;;
local) ;;
*) die "SALTSEG_TEST_BASE=$mode: expected auto, official or local" ;;
esac
if [ "$mode" = official ]; then
    echo "$official"
    exit 0
fi

mirror=${SALTSEG_DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3,python3-venv,python-is-python3,ca-certificates
sources=(
    "deb $mirror bookworm main"
    "deb $mirror bookworm-updates main"
    "deb ${mirror%/debian}/debian-security bookworm-security main"
)
extra_ca=/usr/local/share/ca-certificates
mmdebstrap_args=(
    --variant=minbase
    --include="$packages"
    --format=tar
    --aptopt='Acquire::Retries "3"'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
)
if compgen -G "$extra_ca/*.crt" >/dev/null; then
    # shellcheck disable=SC2016  # mmdebstrap's shell expands $1 (the new root)
    mmdebstrap_args+=(
        --customize-hook="copy-in $extra_ca /usr/local/share"
        --customize-hook='chroot "$1" update-ca-certificates >/dev/null'
    )
fi
# The cache key: the recipe (packages, sources, options) and the extra certificates.
key=$({
    printf '%s\n' "${mmdebstrap_args[@]}" "${sources[@]}"
    find "$extra_ca" -type f -name '*.crt' -print0 2>/dev/null | sort -z | xargs -0r cat
} | sha256sum | cut -c1-12)
base=localhost/saltseg-base:bookworm-py311-$key
tarball=$cache/base-bookworm-py311-$key.tar

if image_exists "$base"; then
    say "$base: already in $DOCKER's storage"
else
    if [ -f "$tarball" ]; then
        say "the cached $tarball"
    else
        command -v mmdebstrap >/dev/null 2>&1 ||
            die "mmdebstrap not found: install it (Debian: apt-get install mmdebstrap), or use SALTSEG_TEST_BASE=official where a registry is reachable"
        say "mmdebstrap bookworm ($packages) -> $tarball"
        rm -f "$cache"/base-bookworm-py311-*.tar "$tarball.partial"
        mmdebstrap --quiet "${mmdebstrap_args[@]}" bookworm "$tarball.partial" "${sources[@]}" >&2 ||
            die "mmdebstrap failed (mirror $mirror; SALTSEG_DEBIAN_MIRROR sets another)"
        mv "$tarball.partial" "$tarball"
    fi
    "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["bash"]' \
        "$tarball" "$base" >/dev/null || die "cannot import $tarball as $base"
    say "imported $tarball as $base"
fi
echo "$base"
