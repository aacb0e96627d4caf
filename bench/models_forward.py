"""CPU forward throughput and peak memory of every registered network.

Each network runs in a fresh subprocess (so the RSS high-water mark from
``resource.getrusage`` is its own): build, one warm-up batch, then ``--reps`` timed
batches of ``--batch`` tiles without and with horizontal-flip TTA (prediction of the image
and un-flipped prediction of the flipped image, averaged); throughput uses the median batch
time. Prints a Markdown table.

    python bench/models_forward.py            # full-size and tiny networks
    python bench/models_forward.py --quick    # tiny networks only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _worker(name: str, batch: int, reps: int) -> dict[str, Any]:
    """Benchmark one network in this process and return the measurements."""
    import resource

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from saltseg.data.adapters import get_adapter
    from saltseg.nets.zoo import get_model_spec

    spec = get_model_spec(name)
    t0 = time.perf_counter()
    model = spec.build()
    build_s = time.perf_counter() - t0
    adapter = get_adapter(spec.adapter)
    tiles = np.random.default_rng(0).integers(0, 256, (batch, 101, 101), dtype=np.uint8)
    x = adapter.forward_images(tiles)
    x_flip = np.ascontiguousarray(x[:, :, ::-1])

    def main_output(out: Any) -> np.ndarray:
        return np.asarray(out[spec.main_output] if isinstance(out, dict) else out)

    def plain() -> np.ndarray:
        return main_output(model.predict_on_batch(x))

    def tta() -> np.ndarray:
        a = main_output(model.predict_on_batch(x))
        b = main_output(model.predict_on_batch(x_flip))[:, :, ::-1]
        return 0.5 * (a + b)

    plain()  # warm-up: graph tracing and oneDNN primitive caches
    tta()
    timings: dict[str, float] = {}
    for label, fn in (("plain", plain), ("tta", tta)):
        per_batch = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            per_batch.append(time.perf_counter() - t0)
        timings[label] = float(np.median(per_batch))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "name": name,
        "input_size": spec.input_size,
        "params": int(model.count_params()),
        "build_s": round(build_s, 2),
        "tiles_per_s": round(batch / timings["plain"], 2),
        "tiles_per_s_tta": round(batch / timings["tta"], 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "batch": batch,
        "reps": reps,
    }


def _run_one(name: str, batch: int, reps: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
    cmd += ["--batch", str(batch), "--reps", str(reps)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: benchmark failed\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the measurements."""
    lines = [
        "| network | input | params | tiles/s | tiles/s (flip TTA) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['input_size']} | {r['params']:,} | {r['tiles_per_s']:.2f} "
            f"| {r['tiles_per_s_tta']:.2f} | {r['peak_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--worker``, one network of it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny networks only")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=None, help="timed batches per mode")
    parser.add_argument("--names", nargs="*", help="networks to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker(args.worker, args.batch, args.reps or 1)))
        return 0

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from saltseg.nets.zoo import MODELS

    names = args.names or [n for n, s in MODELS.items() if s.tiny or not args.quick]
    rows = []
    for name in names:
        reps = args.reps or (5 if MODELS[name].tiny else 3)
        row = _run_one(name, args.batch, reps)
        print(f"{name}: {row['tiles_per_s']} tiles/s, {row['peak_rss_mb']} MB", file=sys.stderr)
        rows.append(row)
    print(f"CPU forward, batch {args.batch}, {os.cpu_count()} logical CPUs\n")
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
