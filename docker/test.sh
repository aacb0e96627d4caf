#!/usr/bin/env bash
# `make docker-test`: build the CPU image and run the tiny pipeline in a container, for real.
#
#   docker/test.sh                  # Podman by default (DOCKER=docker for Docker)
#
# 1. The base, by docker/base.sh: the Dockerfile's default (the official Python 3.11 image)
#    when it is on this machine or a registry serves it; otherwise a local Debian 12 "bookworm"
#    base with Python 3.11 (python3-venv, python-is-python3, ca-certificates and this host's
#    extra CA certificates) made with mmdebstrap from Debian's mirror, kept as a tarball in
#    the cache.
# 2. The CPU image saltseg:<version>-cpu on that base, with docker/build.sh (the pip downloads
#    stay in the build's cache mount; unchanged layers are reused, so only a change to the
#    lock file, the constraints or the Dockerfile reinstalls the dependencies).
# 3. In a container started by docker/run.sh, as the invoking user, with a read-only root file
#    system (only the mounts, /tmp and the home folder are writable): `saltseg --help`,
#    `saltseg synth` (64 train / 32 test tiles, into a data folder mounted from the host),
#    `./train.sh --profile tiny --until 1` and
#    `./predict.sh --profile tiny --bes-stage stage1 --phalanx-stage stage1`.
# 4. On the host: the CSV (header, one row per test tile), that every file written belongs to
#    the invoking user, and that nothing changed outside the mounted folders (the test folder
#    and the repository).
#
# Environment:
#   DOCKER                     podman (default) or docker
#   CONTAINERS_CONF            Podman's settings (default here: docker/containers.conf)
#   SALTSEG_TEST_BASE, SALTSEG_DEBIAN_MIRROR, SALTSEG_DOCKER_TEST_CACHE: see docker/base.sh
#   SALTSEG_DOCKER_TEST_KEEP   1: keep the test folder (data, weights, predictions) afterwards
#   SALTSEG_DOCKER_TEST_TILES  train and test tiles to generate (default "64 32")
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DOCKER=${DOCKER:-podman}
export SALTSEG_TENSORFLOW=cpu
# shellcheck source-path=SCRIPTDIR source=params.sh
source "$here/params.sh"

die() {
    echo "docker/test.sh: error: $*" >&2
    exit 1
}
say() {
    echo "docker/test.sh: $*" >&2
}

start=$(date +%s)
phase_start=$start
phase_times=()
phase_end() { # NAME: record the seconds since the previous phase ended
    local now
    now=$(date +%s)
    phase_times+=("$1 $((now - phase_start)) s")
    say "$1 done in $((now - phase_start)) s"
    phase_start=$now
}

# --------------------------------------------------------------------------- the engine
if [ "$SALTSEG_ENGINE" = podman ] && [ -z "${CONTAINERS_CONF:-}" ]; then
    export CONTAINERS_CONF=$here/containers.conf
    say "Podman settings: CONTAINERS_CONF=$CONTAINERS_CONF"
fi
saltseg_check_engine docker/test.sh || exit 1
"$DOCKER" --version >&2

# --------------------------------------------------------------------------- 1. the base
base=$("$here/base.sh") || die "no base image (docker/base.sh, above)"
phase_end "base ($base)"

# --------------------------------------------------------------------------- 2. the image
say "image inputs: $(cat "$SALTSEG_REPO_ROOT/requirements.lock" "$here/constraints.txt" "$here/Dockerfile" | sha256sum | cut -c1-12) (lock, constraints, Dockerfile)"
SALTSEG_BASE_IMAGE=$base "$here/build.sh" || die "the build of $SALTSEG_IMAGE failed (above)"
# Images the new tag replaced (untagged, no children) only take disk space: drop them.
"$DOCKER" image prune --force >/dev/null || true
size=$("$DOCKER" image inspect --format '{{.Size}}' "$SALTSEG_IMAGE")
say "image $SALTSEG_IMAGE: $((size / 1000000)) MB"
phase_end "build"

# --------------------------------------------------------------------------- 3. the runs
work=$(mktemp -d "${TMPDIR:-/tmp}/saltseg-docker-test.XXXXXX")
cleanup() {
    if [ "${SALTSEG_DOCKER_TEST_KEEP:-}" = 1 ]; then
        say "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
mkdir "$work/data"
cat >"$work/SETTINGS.json" <<'JSON'
{
  "DATA_DIR": "data",
  "NEW_TEST_IMAGES_DATA": null,
  "BES_WEIGHTS_DIR": "weights/bes",
  "PHALANX_WEIGHTS_DIR": "weights/phalanx",
  "PREDICTIONS_DIR": "predictions",
  "PROFILE": "tiny"
}
JSON
stamp=$work/.before
touch "$stamp"
sleep 1 # file times: whatever the runs write is strictly newer than the stamp

export SALTSEG_SETTINGS=$work/SETTINGS.json SALTSEG_GPUS=none
# The image's root file system is read-only: a write anywhere but the mounts, /tmp and the home
# folder (Keras and Matplotlib settings) fails the run.
export SALTSEG_DOCKER_ARGS="--read-only --tmpfs /tmp:rw,mode=1777 --tmpfs /home/saltseg:rw,mode=1777 -e TF_CPP_MIN_LOG_LEVEL=2"
in_container() { # COMMAND...: run it through docker/run.sh, stop on failure
    say "in the container: $*"
    "$here/run.sh" "$@" || die "in the container, '$*' failed (exit $?)"
}
read -r n_train n_test <<<"${SALTSEG_DOCKER_TEST_TILES:-64 32}"
in_container saltseg --help >/dev/null
in_container saltseg synth --out "$work/data" --n-train "$n_train" --n-test "$n_test" --seed 0
in_container ./train.sh --profile tiny --until 1
in_container ./predict.sh --profile tiny --bes-stage stage1 --phalanx-stage stage1
phase_end "container runs"

# --------------------------------------------------------------------------- 4. host checks
csv=$work/predictions/test_prediction.csv
[ -f "$csv" ] || die "$csv: the prediction CSV was not written"
[ "$(head -n 1 "$csv" | tr -d '\r')" = "id,rle_mask" ] || die "$csv: header is not 'id,rle_mask'"
tiles=$(find "$work/data/test/images" -name '*.png' | wc -l)
rows=$(($(wc -l <"$csv") - 1))
[ "$tiles" -eq "$n_test" ] || die "$work/data/test/images: $tiles tiles, expected $n_test"
[ "$rows" -eq "$tiles" ] || die "$csv: $rows rows for $tiles test tiles"
ids=$(tail -n +2 "$csv" | cut -d, -f1 | sort)
expected=$(find "$work/data/test/images" -name '*.png' -printf '%f\n' | sed 's/\.png$//' | sort)
[ "$ids" = "$expected" ] || die "$csv: its ids are not the test tiles' names"
me="$(id -u):$(id -g)"
owner=$(stat -c %u:%g "$csv")
[ "$owner" = "$me" ] || die "$csv belongs to $owner, not to the invoking user $me"
strangers=$(find "$work" \( ! -user "$(id -u)" -o ! -group "$(id -g)" \) -printf '%u:%g %p\n' | head -n 5)
[ -z "$strangers" ] || die "files not owned by $me:"$'\n'"$strangers"
# Written on the host: only under the mounted folders (the settings' DATA_DIR, weights and
# predictions). The repository, whose SETTINGS.json path is mounted read-only, is untouched.
outside=$(find "$work" -mindepth 1 -newer "$stamp" ! -path "$work/data" ! -path "$work/data/*" \
    ! -path "$work/weights" ! -path "$work/weights/*" \
    ! -path "$work/predictions" ! -path "$work/predictions/*" -print | head -n 5)
[ -z "$outside" ] || die "written outside the mounted folders:"$'\n'"$outside"
in_repo=$(find "$SALTSEG_REPO_ROOT" -path "$SALTSEG_REPO_ROOT/.git" -prune -o -newer "$stamp" -print | head -n 5)
[ -z "$in_repo" ] || die "written in the repository $SALTSEG_REPO_ROOT during the runs:"$'\n'"$in_repo"
phase_end "host checks"

total=$(($(date +%s) - start))
phases=$(IFS=,; echo "${phase_times[*]}")
say "CSV $csv: $rows rows for $tiles test tiles, owner $owner (the invoking user); nothing written outside the mounts"
printf 'docker/test.sh: passed in %d s (%s), %s %d MB, base %s\n' "$total" \
    "${phases//,/, }" "$SALTSEG_IMAGE" "$((size / 1000000))" "$base"
