"""The Docker image, checked without a container engine.

hadolint lints docker/Dockerfile, shellcheck lints every shell script of the repository, the
Dockerfile is parsed to prove it installs requirements.lock (with only the TensorFlow line
swapped for the GPU build, or unchanged for the CPU build), and docker/run.sh and
docker/build.sh run against a fake ``docker`` (or ``podman``) first on PATH that records its
arguments. The image is built and run for real by docker/test.sh (`make docker-test`, in CI).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import saltseg
from saltseg.config.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
LOCK = ROOT / "requirements.lock"
CONTAINER_SETTINGS = "/workdir/SETTINGS.json"
IMAGE = f"saltseg:{saltseg.__version__}"


def _tool(name: str) -> str:
    """A linter installed from requirements.lock: the venv's, else one on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: it is pinned in requirements.lock (run `make setup`)")
    return found


def _is_shell_script(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    try:
        with path.open("rb") as f:
            first = f.readline(200).decode("utf-8", "replace")
    except OSError:
        return False
    return re.match(r"#!.*[/ ](ba)?sh( |$)", first.rstrip("\n")) is not None


def shell_scripts() -> list[str]:
    """Every shell script: tracked or new (not ignored) files, as the Makefile's lint finds them."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the tree
        skip = {".git", ".venv", "data", "predictions", "node_modules", "__pycache__"}
        listed = []
        for folder, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in skip and not d.endswith("_cache")]
            listed += [str(Path(folder, f).relative_to(ROOT)) for f in files]
    return sorted(f for f in listed if (ROOT / f).is_file() and _is_shell_script(ROOT / f))


# --------------------------------------------------------------------------- linters


def test_hadolint_passes_on_the_dockerfile() -> None:
    hadolint = _tool("hadolint")
    res = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0, f"hadolint findings:\n{res.stdout}{res.stderr}"


def test_shellcheck_passes_on_every_shell_script() -> None:
    scripts = shell_scripts()
    for expected in (
        "docker/build.sh",
        "docker/params.sh",
        "docker/run.sh",
        "docker/test.sh",
        ".ci/run",
    ):
        assert expected in scripts, f"{expected} not found by the script discovery"
    shellcheck = _tool("shellcheck")
    res = subprocess.run(
        [shellcheck, "--color=never", "-x", *scripts], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0, f"shellcheck findings:\n{res.stdout}{res.stderr}"


# --------------------------------------------------------------------------- the Dockerfile


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued instruction"
    return out


def _lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_dockerfile_base_is_python_311_pinned_by_exact_tag() -> None:
    steps = dockerfile_instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert froms == ["${BASE_IMAGE}"]
    # The base is a build argument declared before FROM; its default is the official image of
    # the lock's Python 3.11 at an exact patch version (never a floating tag), fully qualified
    # so that Podman, which resolves no short names, pulls the same image as Docker.
    assert steps[0][0] == "ARG"
    name, _, default = steps[0][1].partition("=")
    assert name == "BASE_IMAGE"
    assert re.fullmatch(r"docker\.io/library/python:3\.11\.\d+-slim-bookworm", default), default
    assert "Python 3.11" in LOCK.read_text(encoding="utf-8").splitlines()[0]
    # The TensorFlow variant is an argument of the build stage, GPU by default.
    assert ("ARG", "TENSORFLOW=gpu") in steps[1:]


def test_dockerfile_installs_from_the_lock_file(tmp_path: Path) -> None:
    steps = dockerfile_instructions()
    copies = [i for i, (w, a) in enumerate(steps) if w == "COPY" and "requirements.lock" in a]
    assert copies, "no COPY of requirements.lock"
    copy_args = shlex.split(steps[copies[0]][1])
    dest = copy_args[-1]
    sources = copy_args[:-1]
    assert "requirements.lock" in sources and "docker/constraints.txt" in sources
    lock_in_image = dest.rstrip("/") + "/requirements.lock" if dest.endswith("/") else dest

    # The RUN after the COPY: sed derives the install file from the lock, pip installs it.
    runs = [a for w, a in steps[copies[0] + 1 :] if w == "RUN"]
    run = runs[0]
    m = re.search(r"sed -E '([^']+)' +(\S+) *> *(\S+)", run)
    assert m, f"no `sed -E '...' LOCK > FILE` in: {run}"
    expr, sed_in, derived = m.groups()
    assert sed_in == lock_in_image
    pip = re.search(r"pip install [^&]*-r +" + re.escape(derived) + r"(\s|$)", run)
    assert pip, f"no `pip install -r {derived}` in: {run}"
    assert run.index(m.group(0)) < pip.start(), "pip install runs before the file is derived"
    assert "constraints.txt" in run[pip.start() :].split("&&")[0], "constraints not applied"

    # Apply the Dockerfile's own sed to the real lock: exactly the TensorFlow line changes.
    res = subprocess.run(["sed", "-E", expr, str(LOCK)], capture_output=True, text=True, check=True)
    before = LOCK.read_text(encoding="utf-8").splitlines()
    after = res.stdout.splitlines()
    assert len(before) == len(after)
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    tf_cpu = _lock_pins(LOCK)["tensorflow-cpu"]
    assert changed == [(f"tensorflow_cpu=={tf_cpu}", f"tensorflow[and-cuda]=={tf_cpu}")]


def _variant_script(run: str, deps: Path) -> str:
    """The `case "$TENSORFLOW" ... esac` of the dependencies' RUN, on a folder of ours."""
    start = run.index('case "$TENSORFLOW" in')
    end = run.index("esac", start) + len("esac")
    return run[start:end].replace("/tmp/saltseg-deps/", f"{deps}/")


@pytest.mark.parametrize("variant", ["gpu", "cpu", "rocm"])
def test_dockerfile_tensorflow_variant_selects_the_requirements(
    tmp_path: Path, variant: str
) -> None:
    """The Dockerfile's own shell code: gpu swaps the TensorFlow line, cpu keeps the lock."""
    steps = dockerfile_instructions()
    run = next(a for w, a in steps if w == "RUN" and "requirements.lock" in a)
    deps = tmp_path / "deps"
    deps.mkdir()
    shutil.copy(LOCK, deps / "requirements.lock")
    res = subprocess.run(
        ["sh", "-c", _variant_script(run, deps)],
        env={**os.environ, "TENSORFLOW": variant},
        capture_output=True,
        text=True,
    )
    derived = deps / "requirements-image.txt"
    lock = LOCK.read_text(encoding="utf-8")
    tf_cpu = _lock_pins(LOCK)["tensorflow-cpu"]
    if variant == "rocm":
        assert res.returncode != 0
        assert "TENSORFLOW=rocm: expected gpu or cpu" in res.stderr
        return
    assert res.returncode == 0, res.stderr
    assert re.search(r"pip install [^&]*-r +" + re.escape("/tmp/saltseg-deps/" + derived.name), run)
    if variant == "cpu":
        assert derived.read_text(encoding="utf-8") == lock
        assert f"tensorflow_cpu=={tf_cpu}" in lock.splitlines()
    else:
        gpu = derived.read_text(encoding="utf-8").splitlines()
        assert f"tensorflow[and-cuda]=={tf_cpu}" in gpu
        assert len(gpu) == len(lock.splitlines())


def test_dockerfile_cpu_variant_refuses_a_lock_without_tensorflow_cpu(tmp_path: Path) -> None:
    run = next(a for w, a in dockerfile_instructions() if w == "RUN" and "requirements.lock" in a)
    deps = tmp_path / "deps"
    deps.mkdir()
    (deps / "requirements.lock").write_text("numpy==2.0.0\ntensorflow==2.21.0\n")
    for variant in ("cpu", "gpu"):
        res = subprocess.run(
            ["sh", "-c", _variant_script(run, deps)],
            env={**os.environ, "TENSORFLOW": variant},
            capture_output=True,
            text=True,
        )
        assert res.returncode != 0, variant


def test_dockerfile_installs_the_project_and_runs_as_non_root() -> None:
    steps = dockerfile_instructions()
    words = [w for w, _ in steps]
    assert ("WORKDIR", "/workdir") in steps
    runs = " ".join(a for w, a in steps if w == "RUN")
    assert "pip install --no-cache-dir --no-deps --no-build-isolation -e ." in runs
    # The venv where `make setup` makes it, first on PATH, so scripts find it unchanged.
    env = " ".join(a for w, a in steps if w == "ENV")
    assert "VENV=/workdir/.venv" in env and "PATH=/workdir/.venv/bin:$PATH" in env
    user = [a for w, a in steps if w == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")


def test_docker_constraints_only_add_pins() -> None:
    """docker/constraints.txt pins what the lock lacks (CUDA wheels); it never overrides it."""
    lock = _lock_pins(LOCK)
    pins = _lock_pins(ROOT / "docker" / "constraints.txt")
    assert {n for n in pins if n.startswith("nvidia-")} >= {
        "nvidia-cudnn-cu12",
        "nvidia-cublas-cu12",
        "nvidia-cuda-runtime-cu12",
    }
    for name, version in pins.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.]*", version), f"{name}: not an exact pin"
        assert name not in lock, f"{name} is pinned by requirements.lock already"


def test_dockerignore_keeps_data_weights_predictions_and_venv_out() -> None:
    patterns = {
        p.strip().strip("/")
        for p in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if p.strip() and not p.startswith("#")
    }
    for needed in (".venv", ".git", "data", "predictions", "bes/weights", "phalanx/weights"):
        assert needed in patterns, f".dockerignore does not exclude {needed}"
    assert not any(p.startswith("!") for p in patterns), "a re-include would leak data"


# --------------------------------------------------------------------------- run.sh, build.sh

FAKE_DOCKER = """#!{python}
# A stand-in for docker (and podman): appends its arguments (and the settings file mounted at
# {target}, read while the container would run) to $FAKE_DOCKER_LOG as a JSON line.
# `info` (Podman's settings check) prints $FAKE_PODMAN_INFO and is not recorded.
import json, os, sys
argv = sys.argv[1:]
if argv[:1] == ["info"]:
    print(os.environ.get("FAKE_PODMAN_INFO", "runc cgroupfs v2"))
    sys.exit(0)
record = {{"argv": argv}}
for flag, value in zip(argv, argv[1:]):
    if flag == "-v" and value.split(":")[1] == "{target}":
        with open(value.split(":")[0]) as f:
            record["settings"] = json.load(f)
with open(os.environ["FAKE_DOCKER_LOG"], "a") as f:
    f.write(json.dumps(record) + "\\n")
sys.exit(int(os.environ.get("FAKE_DOCKER_RC", "0")))
"""


class Harness:
    """Runs docker/run.sh or docker/build.sh with a fake docker and a project in tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for engine in ("docker", "podman"):
            fake = self.bin / engine
            fake.write_text(FAKE_DOCKER.format(python=sys.executable, target=CONTAINER_SETTINGS))
            fake.chmod(0o755)
        self.log = tmp_path / "docker.log"
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.project = tmp_path / "project"
        self.project.mkdir()
        self.caller = tmp_path / "elsewhere"  # run.sh is called from an unrelated folder
        self.caller.mkdir()

    def nvidia_smi(self, gpus: int) -> None:
        out = "".join(f"GPU {i}: Fake GPU (UUID: GPU-{i})\\n" for i in range(gpus))
        script = self.bin / "nvidia-smi"
        script.write_text(f"#!/bin/sh\nprintf '{out}'\nexit {0 if gpus else 9}\n")
        script.chmod(0o755)

    def settings(self, content: dict) -> Path:
        path = self.project / "SETTINGS.json"
        path.write_text(json.dumps(content))
        return path

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SALTSEG_", "FAKE_DOCKER")) and k != "DOCKER"
        }
        base.update(
            PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            FAKE_DOCKER_LOG=str(self.log),
            TMPDIR=str(self.tmpdir),
        )
        base.update(env)
        return subprocess.run(
            ["bash", str(ROOT / "docker" / script), *args],
            cwd=self.caller,
            env=base,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def _split(argv: list[str], image: str = IMAGE) -> tuple[list[str], list[str]]:
    """docker run's own arguments and the command after the image."""
    assert argv[0] == "run"
    i = argv.index(image)
    return argv[1:i], argv[i + 1 :]


def _mounts(opts: list[str]) -> dict[str, tuple[str, str]]:
    """-v SOURCE:TARGET[:MODE] options as {target: (source, mode)}."""
    out = {}
    for flag, value in itertools.pairwise(opts):
        if flag == "-v":
            src, target, *mode = value.split(":")
            assert target not in out, f"{target} mounted twice"
            out[target] = (src, mode[0] if mode else "rw")
    return out


def test_image_tag_is_the_project_version() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{saltseg.__version__}"' in pyproject
    res = subprocess.run(
        ["bash", "-c", f'source {ROOT}/docker/params.sh && echo "$SALTSEG_IMAGE"'],
        cwd="/",
        env={k: v for k, v in os.environ.items() if not k.startswith("SALTSEG_")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout.strip() == IMAGE


def test_run_mounts_settings_folders_gpu_and_passes_the_command(harness: Harness) -> None:
    tiles = harness.tmp / "new tiles"  # a space in the path, on purpose
    tiles.mkdir()
    data = harness.project / "data"
    data.mkdir()
    harness.settings(
        {
            "DATA_DIR": "data",
            "NEW_TEST_IMAGES_DATA": str(tiles),
            "BES_WEIGHTS_DIR": "w/bes",
            "PHALANX_WEIGHTS_DIR": "w/phalanx",
            "PREDICTIONS_DIR": "../out/predictions",
            "PROFILE": "tiny",
        }
    )
    res = harness.run(
        "run.sh",
        "./predict.sh",
        "--profile",
        "tiny",
        SALTSEG_SETTINGS="../project/SETTINGS.json",  # relative to the caller's folder
        SALTSEG_GPUS="all",
    )
    assert res.returncode == 0, res.stderr
    [call] = harness.calls()
    opts, command = _split(call["argv"])
    assert command == ["./predict.sh", "--profile", "tiny"]
    assert opts[opts.index("--gpus") + 1] == "all"
    assert "--ipc=host" in opts and "--rm" in opts
    assert opts[opts.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"
    assert opts[opts.index("--workdir") + 1] == "/workdir"
    assert f"SALTSEG_SETTINGS={CONTAINER_SETTINGS}" in opts

    expected = {
        str(data): "rw",
        str(harness.project / "w" / "bes"): "rw",
        str(harness.project / "w" / "phalanx"): "rw",
        str(harness.tmp / "out" / "predictions"): "rw",
        str(tiles): "ro",
    }
    mounts = _mounts(opts)
    settings_mount = mounts.pop(CONTAINER_SETTINGS)
    assert settings_mount[1] == "ro"
    # Each folder at the same absolute path inside the container as on the host.
    assert all(source == target for target, (source, _) in mounts.items())
    assert {target: mode for target, (_, mode) in mounts.items()} == expected
    for folder in list(expected)[1:4]:
        assert Path(folder).is_dir(), f"{folder}: output folder not created"

    # The container's settings: the same folders, absolute, the other keys as they were.
    assert call["settings"] == {
        "DATA_DIR": str(data),
        "NEW_TEST_IMAGES_DATA": str(tiles),
        "BES_WEIGHTS_DIR": str(harness.project / "w" / "bes"),
        "PHALANX_WEIGHTS_DIR": str(harness.project / "w" / "phalanx"),
        "PREDICTIONS_DIR": str(harness.tmp / "out" / "predictions"),
        "PROFILE": "tiny",
    }
    assert not any(harness.tmpdir.iterdir()), "run.sh left its temporary settings behind"


def test_run_resolves_paths_like_saltseg(harness: Harness, monkeypatch) -> None:
    """Defaults, relative paths and ~: the same absolute folders as our settings give."""
    home = harness.tmp / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    path = harness.settings({"DATA_DIR": "../shared/tgs", "PREDICTIONS_DIR": "~/preds"})
    (harness.tmp / "shared" / "tgs").mkdir(parents=True)
    res = harness.run("run.sh", SALTSEG_SETTINGS=str(path), SALTSEG_GPUS="none", HOME=str(home))
    assert res.returncode == 0, res.stderr
    [call] = harness.calls()
    opts, command = _split(call["argv"])
    assert command == []  # no command: the image's default (a shell)
    want = load_settings(path).resolved()
    got = call["settings"]
    for key in ("DATA_DIR", "BES_WEIGHTS_DIR", "PHALANX_WEIGHTS_DIR", "PREDICTIONS_DIR"):
        assert got[key] == os.path.normpath(want[key]), key
    assert got["NEW_TEST_IMAGES_DATA"] is None  # saltseg's default, inside the DATA_DIR mount
    assert "PROFILE" not in got
    assert got["PREDICTIONS_DIR"] == str(home / "preds")
    assert str(harness.tmp / "shared" / "tgs") in _mounts(opts)


@pytest.mark.parametrize(
    ("mode", "gpus_on_host", "flag"),
    [("auto", 2, "all"), ("auto", 0, None), ("none", 1, None), ("cpu", 1, None), ("2", 0, "2")],
)
def test_gpu_flag_rule(harness: Harness, mode: str, gpus_on_host: int, flag: str | None) -> None:
    harness.nvidia_smi(gpus_on_host)
    harness.settings({})
    env = {"SALTSEG_SETTINGS": str(harness.project / "SETTINGS.json")}
    if mode != "auto":
        env["SALTSEG_GPUS"] = mode
    res = harness.run("run.sh", "nvidia-smi", **env)
    assert res.returncode == 0, res.stderr
    opts, command = _split(harness.calls()[0]["argv"])
    assert command == ["nvidia-smi"]
    assert (opts[opts.index("--gpus") + 1] if "--gpus" in opts else None) == flag
    if flag is None and mode == "auto":
        assert "running on the CPU" in res.stderr


def test_run_user_extra_args_and_exit_code(harness: Harness) -> None:
    harness.settings({})
    res = harness.run(
        "run.sh",
        "false",
        SALTSEG_SETTINGS=str(harness.project / "SETTINGS.json"),
        SALTSEG_GPUS="none",
        SALTSEG_DOCKER_USER="",
        SALTSEG_DOCKER_ARGS="-e FOO=1 --shm-size 1g",
        SALTSEG_IMAGE="registry.example/saltseg:test",
        FAKE_DOCKER_RC="3",
    )
    assert res.returncode == 3  # the container's exit code comes back
    argv = harness.calls()[0]["argv"]
    i = argv.index("registry.example/saltseg:test")
    assert argv[i + 1 :] == ["false"]
    assert "--user" not in argv[:i]
    assert argv[i - 4 : i] == ["-e", "FOO=1", "--shm-size", "1g"]
    assert not any(harness.tmpdir.iterdir())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"NEW_TEST_IMAGES_DATA": "/nonexistent/tiles"}, "NEW_TEST_IMAGES_DATA"),
        ({"DATA_DIR": "data", "EXTRA": 1}, "unknown key 'EXTRA'"),
        ({"DATA_DIR": 5}, "key 'DATA_DIR': expected a string"),
        ({"DATA_DIR": "/tmp/a:b"}, "cannot be mounted"),
        ({"BES_WEIGHTS_DIR": "/usr/lib"}, "refusing to mount /usr/lib"),
    ],
)
def test_run_errors_name_the_problem(harness: Harness, settings: dict, message: str) -> None:
    path = harness.settings(settings)
    res = harness.run("run.sh", "true", SALTSEG_SETTINGS=str(path), SALTSEG_GPUS="none")
    assert res.returncode != 0
    assert message in res.stderr and "error" in res.stderr
    assert harness.calls() == []  # docker never started


def test_run_errors_without_docker_or_settings(harness: Harness) -> None:
    res = harness.run("run.sh", SALTSEG_SETTINGS=str(harness.tmp / "missing.json"))
    assert res.returncode != 0 and "settings file not found" in res.stderr
    harness.settings({})
    res = harness.run(
        "run.sh", SALTSEG_SETTINGS=str(harness.project / "SETTINGS.json"), DOCKER="no-such-docker"
    )
    assert res.returncode != 0
    assert "no container engine: 'no-such-docker' not found" in res.stderr
    assert harness.calls() == []


def test_build_tags_the_version_and_sends_the_repo(harness: Harness) -> None:
    res = harness.run("build.sh", "--no-cache")
    assert res.returncode == 0, res.stderr
    [call] = harness.calls()
    argv = call["argv"]
    assert argv[0] == "build"
    assert argv[argv.index("--file") + 1] == str(DOCKERFILE)
    assert argv[argv.index("--tag") + 1] == IMAGE
    assert f"SALTSEG_VERSION={saltseg.__version__}" in argv
    assert "--no-cache" in argv
    assert argv[-1] == str(ROOT)


def test_build_cpu_variant_and_base_image(harness: Harness) -> None:
    res = harness.run(
        "build.sh", SALTSEG_TENSORFLOW="cpu", SALTSEG_BASE_IMAGE="localhost/base:bookworm"
    )
    assert res.returncode == 0, res.stderr
    argv = harness.calls()[0]["argv"]
    assert argv[argv.index("--tag") + 1] == f"{IMAGE}-cpu"
    build_args = [v for f, v in itertools.pairwise(argv) if f == "--build-arg"]
    assert "TENSORFLOW=cpu" in build_args
    assert "BASE_IMAGE=localhost/base:bookworm" in build_args
    # By default: the GPU variant on the Dockerfile's own base.
    harness.log.unlink()
    assert harness.run("build.sh").returncode == 0
    build_args = [
        v for f, v in itertools.pairwise(harness.calls()[0]["argv"]) if f == "--build-arg"
    ]
    assert "TENSORFLOW=gpu" in build_args
    assert not any(a.startswith("BASE_IMAGE=") for a in build_args)


def test_cpu_variant_runs_its_own_image_without_gpus(harness: Harness) -> None:
    harness.nvidia_smi(2)
    harness.settings({})
    res = harness.run(
        "run.sh",
        "true",
        SALTSEG_SETTINGS=str(harness.project / "SETTINGS.json"),
        SALTSEG_TENSORFLOW="cpu",
    )
    assert res.returncode == 0, res.stderr
    opts, command = _split(harness.calls()[0]["argv"], f"{IMAGE}-cpu")
    assert command == ["true"] and "--gpus" not in opts and "--device" not in opts
    assert "the CPU image" in res.stderr
    res = harness.run("run.sh", "true", SALTSEG_TENSORFLOW="rocm")
    assert res.returncode != 0 and "SALTSEG_TENSORFLOW=rocm: expected gpu or cpu" in res.stderr


PODMAN_CONF = str(ROOT / "docker" / "containers.conf")


@pytest.mark.parametrize(
    ("gpus", "devices"),
    [
        ("all", ["all"]),
        ("2", ["0", "1"]),
        ('"device=1,3"', ["1", "3"]),
        ("auto", ["all"]),
        ("none", []),
    ],
)
def test_podman_gpus_are_cdi_devices(harness: Harness, gpus: str, devices: list[str]) -> None:
    harness.nvidia_smi(1)
    cdi = harness.tmp / "cdi"
    cdi.mkdir()
    (cdi / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    harness.settings({})
    res = harness.run(
        "run.sh",
        "nvidia-smi",
        SALTSEG_SETTINGS=str(harness.project / "SETTINGS.json"),
        SALTSEG_GPUS=gpus,
        SALTSEG_CDI_SPEC_DIRS=f"{harness.tmp / 'nowhere'} {cdi}",
        DOCKER="podman",
        CONTAINERS_CONF=PODMAN_CONF,
    )
    assert res.returncode == 0, res.stderr
    opts, command = _split(harness.calls()[0]["argv"])
    assert command == ["nvidia-smi"] and "--gpus" not in opts
    assert [v for f, v in itertools.pairwise(opts) if f == "--device"] == [
        f"nvidia.com/gpu={d}" for d in devices
    ]
    assert opts[opts.index("--security-opt") + 1] == "label=disable"
    # Rootless Podman maps the caller's uid to itself, so mounted files stay the caller's.
    assert ("--userns=keep-id" in opts) == (os.geteuid() != 0)
    assert opts[opts.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"


def test_podman_gpus_need_a_cdi_spec(harness: Harness) -> None:
    harness.settings({})
    res = harness.run(
        "run.sh",
        SALTSEG_SETTINGS=str(harness.project / "SETTINGS.json"),
        SALTSEG_GPUS="all",
        SALTSEG_CDI_SPEC_DIRS=str(harness.tmp / "no-cdi"),
        DOCKER="podman",
        CONTAINERS_CONF=PODMAN_CONF,
    )
    assert res.returncode != 0
    assert (
        "no CDI spec for nvidia.com/gpu" in res.stderr and "nvidia-ctk cdi generate" in res.stderr
    )
    assert harness.calls() == []


@pytest.mark.parametrize("script", ["run.sh", "build.sh"])
def test_podman_without_the_needed_settings_is_refused(harness: Harness, script: str) -> None:
    """crun on a hybrid cgroup host, systemd cgroups without systemd, rlimits too high."""
    conf = harness.tmp / "containers.conf"
    conf.write_text('[engine]\nruntime = "crun"\n')
    harness.settings({})
    env = {
        "SALTSEG_SETTINGS": str(harness.project / "SETTINGS.json"),
        "SALTSEG_GPUS": "none",
        "DOCKER": "podman",
        "CONTAINERS_CONF": str(conf),
        "FAKE_PODMAN_INFO": "crun systemd v1",
    }
    # A hard nofile limit below Podman's default for root (1048576), as on a sandboxed host.
    res = subprocess.run(
        ["bash", "-c", f'ulimit -n 4000 && exec bash "{ROOT}/docker/{script}"'],
        cwd=harness.caller,
        env={**os.environ, "PATH": f"{harness.bin}{os.pathsep}{os.environ['PATH']}"}
        | {"FAKE_DOCKER_LOG": str(harness.log), "TMPDIR": str(harness.tmpdir)}
        | env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    expected = []
    if not Path("/run/systemd/system").is_dir():
        expected.append('set cgroup_manager = "cgroupfs"')
    if Path("/sys/fs/cgroup/unified").is_dir():
        expected.append('set runtime = "runc"')
    if os.geteuid() == 0:
        expected.append("default_ulimits")
    if not expected:
        pytest.skip("this host needs none of the settings (systemd, cgroup v2, not root)")
    assert res.returncode != 0
    assert (
        f"docker/{script}: error: Podman (crun, cgroups v1, cgroup manager systemd)" in res.stderr
    )
    assert f"in {conf}:" in res.stderr
    for message in expected:
        assert message in res.stderr
    assert "docker/containers.conf" in res.stderr
    assert harness.calls() == []

    # With the repository's settings file, the same host passes the check.
    env["CONTAINERS_CONF"] = PODMAN_CONF
    env["FAKE_PODMAN_INFO"] = "runc cgroupfs v1"
    assert harness.run(script, **env).returncode == 0
    assert len(harness.calls()) == 1


def test_podman_settings_file_must_exist(harness: Harness) -> None:
    harness.settings({})
    missing = harness.tmp / "no" / "containers.conf"
    res = harness.run(
        "run.sh",
        SALTSEG_SETTINGS=str(harness.project / "SETTINGS.json"),
        DOCKER="podman",
        CONTAINERS_CONF=str(missing),
    )
    assert res.returncode != 0
    assert f"CONTAINERS_CONF={missing}: file not found" in res.stderr
    assert harness.calls() == []


def test_ci_runs_the_container_test_after_make_test() -> None:
    """.ci/run installs Podman and runs `make docker-test` (docker/test.sh) after `make test`."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines() if line.strip().startswith("make ")]
    assert commands.index("make docker-test") > commands.index("make test")
    for package in ("podman", "runc", "mmdebstrap", "containernetworking-plugins"):
        assert re.search(rf"container_packages=\([^)]*\b{package}\b", ci), package
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^docker-test:\n\tbash docker/test\.sh$", makefile, re.M)
    test_sh = (ROOT / "docker" / "test.sh").read_text(encoding="utf-8")
    for step in (
        "in_container saltseg --help",
        "in_container ./train.sh --profile tiny --until 1",
        "in_container ./predict.sh --profile tiny --bes-stage stage1 --phalanx-stage stage1",
    ):
        assert step in test_sh, step
