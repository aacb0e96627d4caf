"""End-to-end time and peak memory of ``./predict.sh`` over the real test tiles (tiny profile).

Prediction cost does not depend on what the weights learned, so the tiny weights come
from a synthetic demo workspace (``--weights-from``, default ``data/demo``: run
``make demo`` first, or this script runs ``train.sh --profile tiny`` on a generated set).
``predict.sh`` then predicts every tile of ``$TGS_DATA/test/images`` with b.e.s. stage 2
and phalanx stage 3 (all their tiny networks, flip TTA), blends, writes the CSV and runs
the mosaic post-processing. Peak memory is the largest resident set of any process it ran.

    python bench/predict_pipeline.py [--weights-from DIR] [--work DIR] [--no-tta]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from saltseg.config.settings import write_settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tgs-salt"


def _saltseg() -> str:
    return str(Path(sys.executable).parent / "saltseg")


def ensure_weights(demo: Path) -> None:
    """Tiny weights of b.e.s. stage 2 and phalanx stage 3 in ``demo`` (trained if missing)."""
    need = [
        demo / "weights/bes/stage2/fold_0/snapshots/DONE.json",
        demo / "weights/phalanx/stage3/fold_0/cycles/DONE.json",
    ]
    if all(p.is_file() for p in need):
        return
    print(f"training tiny weights in {demo} (train.sh --profile tiny) ...", file=sys.stderr)
    env = dict(os.environ, VENV=str(Path(sys.executable).parent.parent), DEMO_DIR=str(demo))
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        env=env,
        check=True,
        stdout=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-from", default=str(ROOT / "data" / "demo"))
    ap.add_argument("--work", default="/tmp/saltseg-bench-predict")
    ap.add_argument("--no-tta", action="store_true")
    args = ap.parse_args(argv)
    data = Path(os.environ.get("TGS_DATA", DEFAULT_DATA))
    if not (data / "test" / "images").is_dir():
        print(f"skipped: no real test tiles in {data} (set TGS_DATA)")
        return 0
    demo = Path(args.weights_from).resolve()
    ensure_weights(demo)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    settings = write_settings(
        work / "SETTINGS.json",
        DATA_DIR=str(data),
        BES_WEIGHTS_DIR=str(demo / "weights/bes"),
        PHALANX_WEIGHTS_DIR=str(demo / "weights/phalanx"),
        PREDICTIONS_DIR=str(work / "predictions"),
        PROFILE="tiny",
    )
    cmd = ["bash", str(ROOT / "predict.sh"), "--settings", str(settings)]
    if args.no_tta:
        cmd.append("--no-tta")
    env = dict(os.environ, SALTSEG=_saltseg(), TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        return 1
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    n_tiles = sum(1 for _ in (data / "test" / "images").glob("*.png"))
    nets = re.findall(r"\[predict (\S+)\] \d+ tiles .*?, (\d+) network", proc.stdout)
    steps = re.findall(r"^== \[\d+\] (.+) \((\d\d:\d\d:\d\d)\)$", proc.stdout, re.M)
    print(f"predict.sh, tiny profile, {os.cpu_count()} logical CPUs, data {data}")
    print()
    print("| tiles | networks | flip TTA | wall time | tiles/s | peak RSS (MB) |")
    print("|---:|---|---|---:|---:|---:|")
    networks = ", ".join(f"{name} x{n}" for name, n in nets)
    tta = "no" if args.no_tta else "yes"
    print(
        f"| {n_tiles:,} | {networks} | {tta} | {wall / 60:.1f} min | {n_tiles / wall:.1f} "
        f"| {peak_mb:,.0f} |"
    )
    if steps:
        print()
        print("| step | started |")
        print("|---|---|")
        for name, at in steps:
            print(f"| {name} | {at} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
