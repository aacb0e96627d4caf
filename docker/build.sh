#!/usr/bin/env bash
# Build the saltseg image, tagged saltseg:<project version> (see docker/params.sh).
#
#   docker/build.sh                 # build from the repository root as the context
#   docker/build.sh --no-cache      # extra arguments go to `docker build` as they are
#
# Works from any folder. The build context is the repository root, filtered by .dockerignore
# (no data, weights, predictions or .venv enter the image).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=params.sh
source "$here/params.sh"

if ! command -v "$DOCKER" >/dev/null 2>&1; then
    echo "error: '$DOCKER' not found: install Docker (and the NVIDIA Container Toolkit for GPUs)" >&2
    exit 1
fi
if [ ! -f "$SALTSEG_REPO_ROOT/.dockerignore" ]; then
    echo "error: $SALTSEG_REPO_ROOT/.dockerignore is missing: the build would send data and weights" >&2
    exit 1
fi

echo "building $SALTSEG_IMAGE from $SALTSEG_REPO_ROOT" >&2
"$DOCKER" build \
    --file "$here/Dockerfile" \
    --tag "$SALTSEG_IMAGE" \
    --build-arg "SALTSEG_VERSION=$SALTSEG_VERSION" \
    "$@" \
    "$SALTSEG_REPO_ROOT"
echo "built $SALTSEG_IMAGE; run it with docker/run.sh [COMMAND...]" >&2
