#!/usr/bin/env bash
# Build the saltseg image, tagged saltseg:<project version> (see docker/params.sh).
#
#   docker/build.sh                          # the GPU image, from the repository root as the context
#   SALTSEG_TENSORFLOW=cpu docker/build.sh   # the CPU image, saltseg:<version>-cpu
#   DOCKER=podman docker/build.sh            # with Podman (docker/README.md)
#   docker/build.sh --no-cache               # extra arguments go to `docker build` as they are
#
# Environment (and those of docker/params.sh: DOCKER, SALTSEG_TENSORFLOW, SALTSEG_IMAGE...):
#   SALTSEG_BASE_IMAGE   the base image (the Dockerfile's BASE_IMAGE; default: its pinned
#                        official Python 3.11 image)
#
# Works from any folder. The build context is the repository root, filtered by .dockerignore
# (no data, weights, predictions or .venv enter the image).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=params.sh
source "$here/params.sh"

saltseg_check_engine docker/build.sh
if [ ! -f "$SALTSEG_REPO_ROOT/.dockerignore" ]; then
    echo "docker/build.sh: error: $SALTSEG_REPO_ROOT/.dockerignore is missing: the build would send data and weights" >&2
    exit 1
fi

build_args=(--build-arg "SALTSEG_VERSION=$SALTSEG_VERSION" --build-arg "TENSORFLOW=$SALTSEG_TENSORFLOW")
if [ -n "${SALTSEG_BASE_IMAGE:-}" ]; then
    build_args+=(--build-arg "BASE_IMAGE=$SALTSEG_BASE_IMAGE")
fi

echo "building $SALTSEG_IMAGE ($SALTSEG_TENSORFLOW, base ${SALTSEG_BASE_IMAGE:-the default}) from $SALTSEG_REPO_ROOT with $DOCKER" >&2
"$DOCKER" build \
    --file "$here/Dockerfile" \
    --tag "$SALTSEG_IMAGE" \
    "${build_args[@]}" \
    "$@" \
    "$SALTSEG_REPO_ROOT"
echo "built $SALTSEG_IMAGE; run it with docker/run.sh [COMMAND...]" >&2
