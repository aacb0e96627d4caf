# shellcheck shell=bash
# Parameters shared by docker/build.sh and docker/run.sh (sourced by both, not run).
#
# The image tag carries the project version (the `version` of pyproject.toml, equal to
# saltseg.__version__), so every release builds and runs its own image: saltseg:<version>.
# Overrides, from the environment:
#   SALTSEG_IMAGE_NAME   image name (default: saltseg)
#   SALTSEG_IMAGE        full image reference name:tag (default: $SALTSEG_IMAGE_NAME:<version>)
#   DOCKER               the docker client to call (default: docker)

# shellcheck disable=SC2034  # the variables below are used by the scripts that source this file

# The repository root (the parent of this file's folder), from wherever the caller runs.
SALTSEG_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The project version: the first `version = "..."` of the [project] table of pyproject.toml.
SALTSEG_VERSION=$(sed -n '/^\[project\]/,/^\[/ s/^version *= *"\([^"]*\)".*/\1/p' \
    "$SALTSEG_REPO_ROOT/pyproject.toml" | head -n 1)
if [ -z "$SALTSEG_VERSION" ]; then
    echo "error: no version found in the [project] table of $SALTSEG_REPO_ROOT/pyproject.toml" >&2
    exit 1
fi

SALTSEG_IMAGE_NAME=${SALTSEG_IMAGE_NAME:-saltseg}
SALTSEG_IMAGE=${SALTSEG_IMAGE:-$SALTSEG_IMAGE_NAME:$SALTSEG_VERSION}

# Where the project lives inside the image (the Dockerfile's WORKDIR).
SALTSEG_CONTAINER_WORKDIR=/workdir

DOCKER=${DOCKER:-docker}
