"""``./train.sh --ray``: round 1 of the tiny profile on a local Ray cluster (2 CPUs).

One sequential run and one Ray run are shared by the module; the Ray head is started once
(``ray start --head --block``, token authentication off) and killed at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saltseg.data.probs import read_probs
from saltseg.data.synthetic import generate_dataset

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _env() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", SALTSEG_PYTHON=sys.executable, **RAY_ENV)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(run: Path, data: Path) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    path = run / "SETTINGS.json"
    keys = {
        "DATA_DIR": str(data),
        "BES_WEIGHTS_DIR": "weights/bes",
        "PHALANX_WEIGHTS_DIR": "weights/phalanx",
        "PREDICTIONS_DIR": "predictions",
        "PROFILE": "tiny",
    }
    path.write_text(json.dumps(keys))
    return path


def _train_sh(settings: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    cmd = ["bash", str(ROOT / "train.sh"), "--settings", str(settings), "--until", "1", *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _outputs(run: Path) -> dict[str, Path]:
    """The run's files by relative path, leaving out the Ray job logs and the settings."""
    return {
        str(p.relative_to(run)): p
        for p in sorted(run.rglob("*"))
        if p.is_file() and "logs" not in p.relative_to(run).parts and p.name != "SETTINGS.json"
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ray") / "data"
    generate_dataset(out, n_train=64, n_test=24, seed=0, workers=1)
    return out


@pytest.fixture(scope="module")
def sequential(data: Path) -> Path:
    run = data.parent / "sequential"
    proc = _train_sh(_settings(run, data))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def cluster(data: Path):
    port = _free_port()
    head = subprocess.Popen(
        [
            str(VENV / "bin" / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
        ],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert head.poll() is None, "ray start --head exited"
            time.sleep(0.5)
    time.sleep(2)  # the raylet registers after the GCS answers
    yield address
    os.killpg(head.pid, signal.SIGKILL)  # the head's own process group: GCS, raylet, workers
    head.wait()


@pytest.fixture(scope="module")
def ray_run(data: Path, cluster: str) -> tuple[Path, str]:
    run = data.parent / "ray"
    proc = _train_sh(_settings(run, data), "--ray", cluster)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run, proc.stdout


def test_ray_round1_matches_sequential(sequential: Path, ray_run: tuple[Path, str]) -> None:
    """The same files, out-of-fold scores, blend and pseudo-labels as train.sh alone."""
    run, text = ray_run
    seq, ray = _outputs(sequential), _outputs(run)
    assert sorted(seq) == sorted(ray)
    for family in ("bes", "phalanx"):
        a = read_probs(sequential / f"predictions/probs/oof/{family}_stage1.h5").meta
        b = read_probs(run / f"predictions/probs/oof/{family}_stage1.h5").meta
        assert (a["score"], a["fold_scores"]) == (b["score"], b["fold_scores"])
        assert re.search(rf"train {family} stage1 fold 0: done on .* validation score", text)
    for name in ("round1_bes", "round1_phalanx"):
        csv = f"predictions/pseudo/{name}/pseudo_labels.csv"
        assert seq[csv].read_text() == ray[csv].read_text()
    rel = "predictions/round1_prediction.csv"
    assert seq[rel].read_text() == ray[rel].read_text()
    assert "train bes stage1 fold 0: running on " in text
    assert "summary (" in text


def test_rerun_skips_every_job(ray_run: tuple[Path, str], cluster: str) -> None:
    run, _ = ray_run
    before = {k: p.stat().st_mtime_ns for k, p in _outputs(run).items()}
    proc = _train_sh(run / "SETTINGS.json", "--ray", cluster)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count(": complete, skipped") == 9
    assert "queued" not in proc.stdout and "running on" not in proc.stdout
    assert {k: p.stat().st_mtime_ns for k, p in _outputs(run).items()} == before


def _log_epochs(phase: Path) -> list[int]:
    log = phase / "log.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    return [json.loads(line)["epoch"] for line in lines if line.strip()]


def test_killed_worker_is_retried_and_resumes(
    ray_run: tuple[Path, str], cluster: str, tmp_path: Path
) -> None:
    """SIGKILL the worker in the middle of a phase: Ray retries the fold, which resumes
    (the training jobs only: the phase and its fold are all that is not complete)."""
    run = tmp_path / "killed"
    shutil.copytree(ray_run[0], run)
    phase = run / "weights/bes/stage1/fold_0/snapshots"
    shutil.rmtree(phase)
    cmd = ["bash", str(ROOT / "train.sh"), "--settings", str(run / "SETTINGS.json")]
    proc = subprocess.Popen(
        [*cmd, "--until", "1", "--ray", cluster, "--max-retries", "2", "--only", "train *"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    worker = None
    for line in proc.stdout:
        lines.append(line)
        m = re.search(r"train bes stage1 fold 0: running on .* \(pid (\d+)\)", line)
        if m:
            worker = int(m.group(1))
            break
    assert worker, "".join(lines)
    state = phase / "resume" / "state.json"  # epoch 1 finished: its checkpoint is written
    deadline = time.monotonic() + 600
    while not state.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert json.loads(state.read_text())["epoch"] == 1, "".join(lines)
    os.kill(worker, signal.SIGKILL)
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=600) == 0, "".join(lines)
    text = "".join(lines)
    assert "train bes stage1 fold 0: failed on " in text
    assert "attempt 2 of 3" in text
    assert _log_epochs(phase) == [1, 2]  # every epoch exactly once
    log = (run / "predictions/logs/ray/train_bes_stage1_fold_0.log").read_text()
    retry = log.rsplit("== train bes stage1 fold 0 on ", 1)[1]  # the retried task's output
    assert "snapshots]: resuming after epoch 1/2" in retry
    assert "] epoch 1 " not in retry and "] epoch 2 " in retry
    assert (phase / "DONE.json").is_file()
    row = next(r for r in text.splitlines() if r.strip().startswith("train bes stage1 fold 0 "))
    assert row.split()[-2:] == [
        "2",
        f"{json.loads((phase / 'DONE.json').read_text())['best_score']:.4f}",
    ]


def test_unreachable_address_fails_at_once(data: Path, tmp_path: Path) -> None:
    settings = _settings(tmp_path / "run", data)
    t0 = time.monotonic()
    proc = _train_sh(settings, "--ray", f"127.0.0.1:{_free_port()}", timeout=120)
    assert proc.returncode == 2
    assert "no Ray cluster answers there" in proc.stderr
    assert time.monotonic() - t0 < 60
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["SETTINGS.json"]


def test_node_without_data_dir_stops_before_training(cluster: str, tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted"
    settings = _settings(tmp_path / "run", missing)
    proc = _train_sh(settings, "--ray", cluster, timeout=180)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    host = socket.gethostname()
    assert re.search(
        rf"node {re.escape(host)} \(.*\): DATA_DIR {missing}: no such folder", proc.stderr
    )
    assert "queued" not in proc.stdout
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["SETTINGS.json"]
