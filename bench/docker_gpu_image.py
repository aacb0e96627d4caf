"""The GPU image built for real: build time, size, and its CUDA wheels loaded.

Builds docker/Dockerfile's default variant (TENSORFLOW=gpu: the lock's tensorflow_cpu line
becomes tensorflow[and-cuda], with the CUDA wheels of docker/constraints.txt) with
docker/build.sh, on the base docker/base.sh gives (the official Python image, or the local
Debian base where no registry is reachable), and with ``--no-cache`` so every layer is built
(pip's wheels may come from the build's wheelhouse cache mount: the table says how many were
downloaded). Then, in the image: TensorFlow's version and CUDA build, the CUDA and cuDNN
versions it was built for, the nvidia-* wheels installed, and whether the CUDA runtime, cuBLAS
and cuDNN shared libraries of those wheels load (they need no GPU to load; a GPU needs a
driver and `docker/run.sh`'s GPU flags). Prints a Markdown table (bench/run_all.py).

Needs Podman (DOCKER=podman, the default here) or Docker, about 20 GB of free disk for the
build, and several minutes (10 to 30 on 2 cores). Not part of CI. Run it alone with
``.venv/bin/python bench/run_all.py --only docker_gpu_image``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKER_DIR = ROOT / "docker"

# Run inside the image: what TensorFlow was built with, the nvidia wheels, and a dlopen of the
# CUDA libraries those wheels ship (found under site-packages/nvidia/*/lib).
PROBE = r"""
import ctypes, glob, json, os, sysconfig
from importlib import metadata
import tensorflow as tf
info = tf.sysconfig.get_build_info()
site = sysconfig.get_paths()["purelib"]
libs = {}
for name in ("libcudart.so.12", "libcublas.so.12", "libcudnn.so.9"):
    found = glob.glob(os.path.join(site, "nvidia", "*", "lib", name))
    if not found:
        libs[name] = "missing"
        continue
    try:
        ctypes.CDLL(found[0])
        libs[name] = "loads"
    except OSError as exc:
        libs[name] = f"fails: {exc}"
wheels = sorted(
    (d.metadata["Name"], d.version)
    for d in metadata.distributions()
    if d.metadata["Name"].lower().startswith("nvidia-")
)
print(json.dumps({
    "tensorflow": tf.__version__,
    "cuda_build": tf.test.is_built_with_cuda(),
    "cuda": info.get("cuda_version"),
    "cudnn": info.get("cudnn_version"),
    "wheels": wheels,
    "libs": libs,
    "gpus": len(tf.config.list_physical_devices("GPU")),
}))
"""


def fail(msg: str) -> None:
    sys.exit(f"bench/docker_gpu_image.py: error: {msg}")


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DOCKER", "podman")
    docker = env["DOCKER"]
    if shutil.which(docker) is None:
        fail(f"'{docker}' not found: install Podman (or Docker and set DOCKER=docker)")
    if Path(docker).name.startswith("podman"):
        env.setdefault("CONTAINERS_CONF", str(DOCKER_DIR / "containers.conf"))
    free = shutil.disk_usage("/var/lib" if Path("/var/lib").exists() else "/").free
    if free < 20e9:
        fail(f"{free / 1e9:.0f} GB free on /var/lib: the GPU image build needs about 20 GB")

    base = subprocess.run(
        ["bash", str(DOCKER_DIR / "base.sh")], env=env, capture_output=True, text=True
    )
    if base.returncode != 0:
        fail(f"docker/base.sh failed:\n{base.stderr}")
    base_image = base.stdout.strip()

    env.update(SALTSEG_TENSORFLOW="gpu", SALTSEG_BASE_IMAGE=base_image)
    with tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False) as log:
        t0 = time.perf_counter()
        build = subprocess.run(
            ["bash", str(DOCKER_DIR / "build.sh"), "--no-cache"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        seconds = time.perf_counter() - t0
        log.seek(0)
        text = log.read()
    if build.returncode != 0:
        fail(f"docker/build.sh failed (log {log.name}):\n{text[-3000:]}")
    os.unlink(log.name)
    downloaded = len(re.findall(r"^\s*Saved ", text, re.M))
    reused = len(re.findall(r"^\s*File was already downloaded ", text, re.M))

    image = subprocess.run(
        ["bash", "-c", f'source "{DOCKER_DIR}/params.sh" && echo "$SALTSEG_IMAGE"'],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    size = int(
        subprocess.run(
            [docker, "image", "inspect", "--format", "{{.Size}}", image],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    subprocess.run([docker, "image", "prune", "--force"], env=env, capture_output=True)
    probe = subprocess.run(
        [docker, "run", "--rm", "-e", "TF_CPP_MIN_LOG_LEVEL=3", image, "python", "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        fail(f"the probe failed in {image}:\n{probe.stderr[-3000:]}")
    got = json.loads(probe.stdout.strip().splitlines()[-1])
    wheels = dict(got["wheels"])

    rows = [
        ("image", f"{image} (TENSORFLOW=gpu), base {base_image}"),
        ("**build time**", f"**{seconds / 60:.1f} min** (`--no-cache`, every layer)"),
        ("wheels", f"{downloaded} downloaded, {reused} from the wheelhouse cache mount"),
        ("**image size**", f"**{size / 1e9:.2f} GB**"),
        ("TensorFlow", f"{got['tensorflow']}, built with CUDA: {got['cuda_build']}"),
        ("built for", f"CUDA {got['cuda']}, cuDNN {got['cudnn']}"),
        (
            "nvidia wheels",
            f"{len(wheels)}: cudnn {wheels.get('nvidia-cudnn-cu12', '-')}, "
            f"cublas {wheels.get('nvidia-cublas-cu12', '-')}, "
            f"cuda-runtime {wheels.get('nvidia-cuda-runtime-cu12', '-')}",
        ),
        ("libraries (dlopen)", ", ".join(f"{k} {v}" for k, v in got["libs"].items())),
        ("GPUs visible", f"{got['gpus']} (this machine has none; no driver)"),
    ]
    print("| what | value |\n|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")
    return 0 if all(v == "loads" for v in got["libs"].values()) and got["cuda_build"] else 1


if __name__ == "__main__":
    sys.exit(main())
