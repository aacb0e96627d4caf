"""Round 1 of the tiny profile: ``./train.sh --until 1`` alone, then on a local Ray cluster.

Usage: python bench/ray_round1.py [--n-train 64] [--keep DIR]

Generates a synthetic dataset, runs round 1 sequentially, then starts a Ray head with two
CPUs (``ray start --head --block``; each job asks for one CPU, so two jobs run at once) and
runs round 1 again with ``--ray``. Prints a Markdown table: both wall times, and Ray's
overhead per job from ``logs/ray/summary.json``: submission to the task's start, and the end
of the last job a job waits for to its start.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"
ENV = dict(os.environ, RAY_AUTH_MODE="disabled", TF_CPP_MIN_LOG_LEVEL="2")


def settings(run: Path, data: Path) -> Path:
    run.mkdir(parents=True)
    path = run / "SETTINGS.json"
    keys = {"DATA_DIR": str(data), "PREDICTIONS_DIR": "predictions", "PROFILE": "tiny"}
    keys |= {"BES_WEIGHTS_DIR": "weights/bes", "PHALANX_WEIGHTS_DIR": "weights/phalanx"}
    path.write_text(json.dumps(keys))
    return path


def train_sh(path: Path, *args: str) -> float:
    t0 = time.perf_counter()
    cmd = ["bash", str(ROOT / "train.sh"), "--settings", str(path), "--until", "1", *args]
    subprocess.run(cmd, env=ENV, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def start_head() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--num-gpus=0"]
    args += ["--include-dashboard=false", "--object-store-memory=100000000"]
    head = subprocess.Popen(
        [str(RAY), *args, "--disable-usage-stats"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(240):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    time.sleep(2)
    return head, f"127.0.0.1:{port}"


def overheads(report: dict) -> tuple[list[float], list[float]]:
    """Per job: submission -> start, and the end of its last dependency -> its start."""
    jobs = report["jobs"]
    queue = [j["starts"][0] - j["submitted"] for j in jobs.values() if j["starts"]]
    gaps = []
    for j in jobs.values():
        ends = [jobs[d]["end"] for d in j["deps"] if jobs[d]["end"]]
        if j["starts"] and ends:
            gaps.append(j["starts"][0] - max(ends))
    return queue, gaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--keep", help="work folder (default: a temporary one, removed)")
    args = ap.parse_args()
    from saltseg.data.synthetic import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        data = work / "data"
        generate_dataset(data, n_train=args.n_train, n_test=24, seed=0, workers=1)
        seq = train_sh(settings(work / "sequential", data))
        head, address = start_head()
        try:
            ray_settings = settings(work / "ray", data)
            ray = train_sh(ray_settings, "--ray", address)
        finally:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        report = json.loads((work / "ray/predictions/logs/ray/summary.json").read_text())
    queue, gaps = overheads(report)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print("| what | value |")
    print("|---|---|")
    print(f"| data | {args.n_train} train tiles, 24 test, tiny profile, round 1 (9 jobs) |")
    print(f"| sequential (`./train.sh --until 1`) | {seq:.0f} s |")
    print(f"| Ray, 2 one-CPU jobs at a time (`--ray`) | {ray:.0f} s ({seq / ray:.2f}x) |")
    print(
        f"| submission -> start, per job | median {statistics.median(queue):.2f} s, "
        f"max {max(queue):.2f} s ({len(queue)} jobs) |"
    )
    print(
        f"| end of its last input job -> start | median {statistics.median(gaps):.2f} s, "
        f"max {max(gaps):.2f} s ({len(gaps)} jobs) |"
    )
    print(f"| load average after | {load} |")


if __name__ == "__main__":
    main()
