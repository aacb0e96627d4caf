#!/usr/bin/env bash
# Run a command in the saltseg image, with the folders of SETTINGS.json mounted.
#
#   docker/run.sh                         # an interactive shell in /workdir
#   docker/run.sh ./train.sh              # any command is passed through as it is
#   docker/run.sh ./predict.sh --profile full
#   docker/run.sh ray-head                # a Ray head node, port $SALTSEG_RAY_PORT (default 6379)
#   docker/run.sh ray-worker HEAD:6379    # a Ray worker joining it (docs/ray.md, docker/README.md)
#
# What it does:
# - reads SETTINGS.json (the repository's, or the file named by SALTSEG_SETTINGS, relative to
#   the folder you call from) with the host's python3 (standard library only: no venv needed),
#   and resolves every path the way saltseg does (relative to the settings file's folder);
# - mounts each folder at the SAME absolute path inside the container: DATA_DIR (read-write, if
#   it exists), BES_WEIGHTS_DIR, PHALANX_WEIGHTS_DIR and PREDICTIONS_DIR (read-write, created if
#   missing) and NEW_TEST_IMAGES_DATA (read-only, must exist, when set);
# - mounts those resolved settings (absolute paths) read-only at /workdir/SETTINGS.json and sets
#   SALTSEG_SETTINGS to it, so ./train.sh and ./predict.sh run unchanged inside;
# - runs as your user id (files written to the mounts are yours), with --ipc=host (shared memory
#   for the data loaders) and --gpus all when the host has an NVIDIA GPU (Podman: the CDI
#   device nvidia.com/gpu=all).
#
# Environment:
#   SALTSEG_SETTINGS     settings file to use (default: SETTINGS.json of this repository)
#   SALTSEG_GPUS         auto (default): --gpus all when `nvidia-smi -L` lists a GPU and the image
#                        is the GPU one, else none; none or cpu: no GPU flag (TensorFlow runs on
#                        the CPU); anything else is passed as --gpus VALUE (all, 2, '"device=0,1"');
#                        Podman gets CDI devices instead: --device nvidia.com/gpu=all, =0, =1...
#   SALTSEG_DOCKER_USER  --user value (default: "$(id -u):$(id -g)"; empty: the image's user)
#   SALTSEG_DOCKER_ARGS  extra `docker run` arguments, split on whitespace (e.g. "-e FOO=1")
#   SALTSEG_CDI_SPEC_DIRS  Podman: folders of CDI specs, as Podman's cdi_spec_dirs (default
#                        "/etc/cdi /var/run/cdi")
#   SALTSEG_IMAGE, SALTSEG_IMAGE_NAME, SALTSEG_TENSORFLOW, DOCKER: see docker/params.sh
# With Podman (DOCKER=podman) the same mounts and flags apply, plus --security-opt label=disable
# (SELinux hosts: the mounts keep their labels) and, rootless, --userns=keep-id (your uid inside
# is your uid outside); docker/params.sh checks Podman's settings first.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=params.sh
source "$here/params.sh"

die() {
    echo "docker/run.sh: error: $*" >&2
    exit 1
}

# The settings file, made absolute against the caller's folder before leaving it.
if [ -n "${SALTSEG_SETTINGS:-}" ]; then
    settings=$SALTSEG_SETTINGS
    case $settings in /*) ;; *) settings=$PWD/$settings ;; esac
    [ -f "$settings" ] || die "SALTSEG_SETTINGS=$SALTSEG_SETTINGS: settings file not found"
else
    settings=$SALTSEG_REPO_ROOT/SETTINGS.json # absent: saltseg's defaults, relative to the repo
fi
cd "$SALTSEG_REPO_ROOT"

saltseg_check_engine docker/run.sh || exit 1
command -v python3 >/dev/null 2>&1 || die "python3 is needed on the host to read SETTINGS.json"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/saltseg-run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
resolved=$tmp/SETTINGS.json

# Resolve the settings: writes $resolved (every path absolute) and prints KEY<TAB>PATH lines.
# The defaults and the resolution rule are those of saltseg/config/settings.py (a test checks this).
paths=$(python3 - "$settings" "$resolved" "$SALTSEG_REPO_ROOT" <<'PYCODE'
import json
import os
import sys

settings, out, repo = sys.argv[1:4]
DEFAULTS = {
    "DATA_DIR": "data",
    "NEW_TEST_IMAGES_DATA": None,
    "BES_WEIGHTS_DIR": "bes/weights",
    "PHALANX_WEIGHTS_DIR": "phalanx/weights",
    "PREDICTIONS_DIR": "predictions",
}
ALLOWED = [*DEFAULTS, "PROFILE"]


def fail(msg):
    sys.exit(f"docker/run.sh: error: {settings}: {msg}")


if os.path.isfile(settings):
    base = os.path.dirname(os.path.realpath(settings))
    try:
        with open(settings, encoding="utf-8") as f:
            raw = json.load(f)
    except ValueError as exc:
        fail(f"not valid JSON: {exc}")
    if not isinstance(raw, dict):
        fail("expected a JSON object of settings")
else:
    base, raw = repo, {}
for key in raw:
    if key not in ALLOWED:
        fail(f"unknown key {key!r} (allowed: {', '.join(ALLOWED)})")

resolved = {}
for key, default in DEFAULTS.items():
    value = raw.get(key, default)
    if value is not None and not isinstance(value, str):
        fail(f"key {key!r}: expected a string, got {value!r}")
    if key == "NEW_TEST_IMAGES_DATA" and not value:
        resolved[key] = None  # saltseg's default: DATA_DIR/test/images
        continue
    path = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
    if any(c in path for c in "\t\n:"):
        fail(f"key {key!r}: {path!r}: a path with a tab, newline or ':' cannot be mounted")
    resolved[key] = path
if "PROFILE" in raw:
    resolved["PROFILE"] = raw["PROFILE"]

with open(out, "w", encoding="utf-8") as f:
    json.dump(resolved, f, indent=2)
    f.write("\n")
for key in DEFAULTS:
    print(f"{key}\t{resolved[key] or ''}")
PYCODE
)
chmod 644 "$resolved"

mount_args=()
mounted=()
# check_target PATH: never bind a host folder over the image's own system or project folders.
check_target() {
    case $1 in
    / | /workdir | /workdir/.venv | /workdir/.venv/* | /proc | /proc/* | /sys | /sys/* | /dev | /dev/* | \
        /etc | /etc/* | /usr | /usr/* | /bin | /bin/* | /sbin | /sbin/* | /lib | /lib/* | /lib64 | /lib64/*)
        die "refusing to mount $1 over the image's own $1 (change SETTINGS.json)"
        ;;
    esac
}
# add_mount HOST_PATH [ro]: bind HOST_PATH at the same path inside the container.
add_mount() {
    local path=$1 mode=${2:-rw} m
    check_target "$path"
    for m in ${mounted[@]+"${mounted[@]}"}; do
        [ "$m" = "$path" ] && return 0 # the same folder under two keys: mount it once
    done
    mounted+=("$path")
    if [ "$mode" = ro ]; then
        mount_args+=(-v "$path:$path:ro")
    else
        mount_args+=(-v "$path:$path")
    fi
}

while IFS=$'\t' read -r key path; do
    case $key in
    DATA_DIR)
        if [ -d "$path" ]; then
            add_mount "$path"
        else
            echo "docker/run.sh: warning: DATA_DIR $path does not exist: not mounted" >&2
        fi
        ;;
    NEW_TEST_IMAGES_DATA)
        [ -z "$path" ] && continue # null: DATA_DIR/test/images, inside the DATA_DIR mount
        [ -d "$path" ] || die "NEW_TEST_IMAGES_DATA $path is not a folder"
        add_mount "$path" ro
        ;;
    *) # weights and predictions: outputs, created here so that they belong to you
        check_target "$path"
        mkdir -p "$path" || die "cannot create $key $path"
        add_mount "$path"
        ;;
    esac
done <<<"$paths"

# set_gpu_args VALUE: the engine's flags for SALTSEG_GPUS=VALUE (all, a count, "device=0,1").
# Docker: --gpus VALUE (NVIDIA Container Toolkit). Podman: CDI devices, which need a CDI spec
# (`nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`).
set_gpu_args() {
    local value=$1 ids=() i
    if [ "$SALTSEG_ENGINE" != podman ]; then
        gpu_args=(--gpus "$value")
        return
    fi
    case $value in
    all) ids=(all) ;;
    [1-9] | [1-9][0-9]) for ((i = 0; i < value; i++)); do ids+=("$i"); done ;;
    *device=*)
        value=${value//\"/}
        value=${value//\'/}
        IFS=, read -r -a ids <<<"${value#*device=}"
        ;;
    *) die "SALTSEG_GPUS=$1: with Podman, expected all, a count or \"device=ID,ID\" (CDI devices)" ;;
    esac
    local dirs dir spec found=
    read -r -a dirs <<<"${SALTSEG_CDI_SPEC_DIRS:-/etc/cdi /var/run/cdi}"
    for dir in "${dirs[@]}"; do
        for spec in "$dir"/*.yaml "$dir"/*.json; do
            if [ -f "$spec" ] && grep -q 'nvidia.com/gpu' "$spec"; then
                found=$spec
            fi
        done
    done
    [ -n "$found" ] ||
        die "SALTSEG_GPUS=$1: Podman reaches NVIDIA GPUs through CDI, and no CDI spec for nvidia.com/gpu is in ${dirs[*]}: run \`nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml\` (NVIDIA Container Toolkit), or SALTSEG_GPUS=none"
    gpu_args=()
    for i in "${ids[@]}"; do
        gpu_args+=(--device "nvidia.com/gpu=$i")
    done
}

gpu_args=()
gpus=${SALTSEG_GPUS:-auto}
case $gpus in
auto)
    if [ "$SALTSEG_TENSORFLOW" = cpu ]; then
        echo "docker/run.sh: the CPU image ($SALTSEG_IMAGE): running on the CPU" >&2
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
        set_gpu_args all
    else
        echo "docker/run.sh: no NVIDIA GPU found (nvidia-smi -L): running on the CPU" >&2
    fi
    ;;
none | cpu) ;;
*) set_gpu_args "$gpus" ;;
esac

# Podman only: no SELinux relabelling of your folders; rootless, your uid maps to itself.
engine_args=()
if [ "$SALTSEG_ENGINE" = podman ]; then
    engine_args+=(--security-opt label=disable)
    if [ "$(id -u)" != 0 ]; then
        engine_args+=(--userns=keep-id)
    fi
fi

args=(run --rm --init --ipc=host)
args+=(${gpu_args[@]+"${gpu_args[@]}"})
args+=(${engine_args[@]+"${engine_args[@]}"})
if [ -z "${SALTSEG_DOCKER_USER+set}" ]; then
    args+=(--user "$(id -u):$(id -g)")
elif [ -n "$SALTSEG_DOCKER_USER" ]; then
    args+=(--user "$SALTSEG_DOCKER_USER")
fi
if [ -t 0 ] && [ -t 1 ]; then
    args+=(-it)
fi
args+=(${mount_args[@]+"${mount_args[@]}"})
args+=(-v "$resolved:$SALTSEG_CONTAINER_WORKDIR/SETTINGS.json:ro")
args+=(-e "SALTSEG_SETTINGS=$SALTSEG_CONTAINER_WORKDIR/SETTINGS.json")
args+=(--workdir "$SALTSEG_CONTAINER_WORKDIR")
read -r -a extra <<<"${SALTSEG_DOCKER_ARGS:-}"
args+=(${extra[@]+"${extra[@]}"})

# Ray cluster nodes (docs/ray.md): `ray start --block` in the same image on every node, host
# networking, the ports fixed so that a firewall can open them (docker/README.md).
case ${1:-} in
ray-head | ray-worker)
    ray_ports=(--node-manager-port=6380 --object-manager-port=6381 --runtime-env-agent-port=6382
        --dashboard-agent-grpc-port=6383 --dashboard-agent-listen-port=6384
        --metrics-export-port=6385 --min-worker-port=10002 --max-worker-port=10999)
    args+=(--network host)
    if [ "$1" = ray-head ]; then
        shift
        set -- ray start --head --block --port="${SALTSEG_RAY_PORT:-6379}" "${ray_ports[@]}" "$@"
    else
        [ -n "${2:-}" ] || die "ray-worker needs the head's address: docker/run.sh ray-worker HOST:6379"
        head_address=$2
        shift 2
        set -- ray start --block --address="$head_address" "${ray_ports[@]}" "$@"
    fi
    ;;
esac

echo "docker/run.sh: $SALTSEG_IMAGE with $DOCKER, gpus: ${gpu_args[*]:-none}, settings: $settings" >&2
"$DOCKER" "${args[@]}" "$SALTSEG_IMAGE" "$@"
