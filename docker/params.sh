# shellcheck shell=bash
# Parameters shared by docker/build.sh and docker/run.sh (sourced by both, not run).
#
# The image tag carries the project version (the `version` of pyproject.toml, equal to
# saltseg.__version__), so every release builds and runs its own image: saltseg:<version>.
# The CPU variant (SALTSEG_TENSORFLOW=cpu) is tagged saltseg:<version>-cpu.
# Overrides, from the environment:
#   SALTSEG_TENSORFLOW   gpu (default) or cpu: the image variant (the Dockerfile's TENSORFLOW)
#   SALTSEG_IMAGE_NAME   image name (default: saltseg)
#   SALTSEG_IMAGE        full image reference name:tag (default: $SALTSEG_IMAGE_NAME:<version>,
#                        or $SALTSEG_IMAGE_NAME:<version>-cpu for the CPU variant)
#   DOCKER               the client to call: docker or podman, a name or a path (default:
#                        docker; podman when only podman is installed)

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

SALTSEG_TENSORFLOW=${SALTSEG_TENSORFLOW:-gpu}
case $SALTSEG_TENSORFLOW in
gpu) saltseg_tag_suffix= ;;
cpu) saltseg_tag_suffix=-cpu ;;
*)
    echo "error: SALTSEG_TENSORFLOW=$SALTSEG_TENSORFLOW: expected gpu or cpu" >&2
    exit 1
    ;;
esac
SALTSEG_IMAGE_NAME=${SALTSEG_IMAGE_NAME:-saltseg}
SALTSEG_IMAGE=${SALTSEG_IMAGE:-$SALTSEG_IMAGE_NAME:$SALTSEG_VERSION$saltseg_tag_suffix}

# Where the project lives inside the image (the Dockerfile's WORKDIR).
SALTSEG_CONTAINER_WORKDIR=/workdir

if [ -z "${DOCKER:-}" ]; then
    DOCKER=docker
    if ! command -v docker >/dev/null 2>&1 && command -v podman >/dev/null 2>&1; then
        DOCKER=podman
    fi
fi
# The engine behind $DOCKER, from its name: podman for a name or path ending in "podman" (a
# `docker` that is Podman's docker shim counts as docker: set DOCKER=podman for it).
case ${DOCKER##*/} in
podman*) SALTSEG_ENGINE=podman ;;
*) SALTSEG_ENGINE=docker ;;
esac

# saltseg_check_engine SCRIPT: stop with an error naming SCRIPT when $DOCKER cannot work: not
# installed, or Podman without the settings this host needs (docker/containers.conf has them).
# SALTSEG_SKIP_ENGINE_CHECK=1 skips the Podman checks.
saltseg_check_engine() {
    local script=$1
    if ! command -v "$DOCKER" >/dev/null 2>&1; then
        echo "$script: error: no container engine: '$DOCKER' not found. Install Docker (and the" \
            "NVIDIA Container Toolkit for GPUs), or Podman and set DOCKER=podman (docker/README.md)" >&2
        return 1
    fi
    if [ "$SALTSEG_ENGINE" != podman ] || [ -n "${SALTSEG_SKIP_ENGINE_CHECK:-}" ]; then
        return 0
    fi
    local info runtime manager cgroups conf problems=()
    if ! info=$("$DOCKER" info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Host.CgroupsVersion}}' 2>&1); then
        echo "$script: error: '$DOCKER info' failed: $info" >&2
        return 1
    fi
    read -r runtime manager cgroups <<<"$info"
    # The file to fix: CONTAINERS_CONF when set (Podman then reads no other), else the
    # system's (root) or the user's (rootless) containers.conf.
    if [ -n "${CONTAINERS_CONF:-}" ]; then
        conf=$CONTAINERS_CONF
        [ -f "$conf" ] || {
            echo "$script: error: CONTAINERS_CONF=$conf: file not found" >&2
            return 1
        }
    elif [ "$(id -u)" = 0 ]; then
        conf=/etc/containers/containers.conf
    else
        conf=${XDG_CONFIG_HOME:-$HOME/.config}/containers/containers.conf
    fi
    if [ "$manager" = systemd ] && [ ! -d /run/systemd/system ]; then
        problems+=("cgroup_manager is \"systemd\" but systemd does not run here: set cgroup_manager = \"cgroupfs\" under [engine]")
    fi
    if [ "$runtime" = crun ] && [ "$cgroups" = v1 ] && [ -d /sys/fs/cgroup/unified ]; then
        problems+=("the runtime crun refuses this host's hybrid cgroup layout (v1 plus /sys/fs/cgroup/unified): install runc and set runtime = \"runc\" under [engine]")
    fi
    # As root, Podman asks for nofile and nproc limits of 1048576 unless default_ulimits says
    # otherwise; a host whose hard limits are lower refuses them when a container starts.
    if [ "$(id -u)" = 0 ] && ! saltseg_podman_sets_ulimits; then
        local hard_nofile hard_nproc
        hard_nofile=$(ulimit -Hn)
        hard_nproc=$(ulimit -Hu)
        if saltseg_below_million "$hard_nofile" || saltseg_below_million "$hard_nproc"; then
            problems+=("Podman's default ulimits (nofile and nproc 1048576) exceed this host's hard limits (nofile $hard_nofile, nproc $hard_nproc): set default_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"] under [containers]")
        fi
    fi
    if [ ${#problems[@]} -gt 0 ]; then
        local p
        echo "$script: error: Podman ($runtime, cgroups $cgroups, cgroup manager $manager) is not set up to run containers on this host; in $conf:" >&2
        for p in "${problems[@]}"; do
            echo "  - $p" >&2
        done
        echo "  docker/containers.conf has all of these: export CONTAINERS_CONF=$SALTSEG_REPO_ROOT/docker/containers.conf (docker/README.md)" >&2
        return 1
    fi
}

saltseg_below_million() { # LIMIT: a number below 1048576 (not "unlimited")
    [ "$1" != unlimited ] && [ "$1" -lt 1048576 ]
}

# True when a containers.conf that Podman reads sets both nofile and nproc in default_ulimits.
saltseg_podman_sets_ulimits() {
    local files=() f
    if [ -n "${CONTAINERS_CONF:-}" ]; then
        files=("$CONTAINERS_CONF")
    else
        for f in /usr/share/containers/containers.conf /etc/containers/containers.conf \
            /etc/containers/containers.conf.d/*.conf; do
            [ -f "$f" ] && files+=("$f")
        done
    fi
    [ ${#files[@]} -gt 0 ] || return 1
    # Uncommented array items such as "nofile=4096:4096" (default_ulimits is the only key
    # whose values look like that).
    grep -qE '^[^#]*"nofile=' "${files[@]}" && grep -qE '^[^#]*"nproc=' "${files[@]}"
}
