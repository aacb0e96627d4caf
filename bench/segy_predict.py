"""``segy predict`` throughput: a 200 x 200 x 400-sample synthetic volume, the cpu network.

The volume is :func:`saltseg.data.synthetic.make_volume` written as SEG-Y (float32); the
network is the cpu profile's (phalanx-v5-cpu, phalanx stage 1) with freshly initialised
weights saved to a file: a forward pass costs the same whatever the weights, so the figures
hold for trained weights (nothing is trained here). Inline direction, flip TTA on (the
defaults of ``saltseg segy predict``), stride 50. Prints a Markdown table (run_all.py).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from saltseg.config.recipe import load_stage
from saltseg.data.segy import open_geometry, write_volume
from saltseg.data.synthetic import make_volume
from saltseg.infer.networks import build_model, save_weights
from saltseg.infer.segy_volume import VolumeOptions, predict_volume
from saltseg.infer.stage import StagePredictor, WeightFile
from saltseg.infer.tiling import StageTiles
from saltseg.nets.zoo import get_model_spec

SHAPE = (200, 200, 400)


def _make_input(path: Path) -> Path:
    """The synthetic SEG-Y (in a child process, so its memory does not count below)."""
    vol, _ = make_volume(0, *SHAPE)
    return write_volume(path, vol)


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            src = pool.submit(_make_input, root / "in.sgy").result()
        recipe = load_stage("phalanx", "stage1", "cpu")
        weights = root / "init.weights.h5"
        save_weights(build_model(get_model_spec(recipe.model)), weights)
        predictor = StagePredictor(recipe, {0: [WeightFile(0, weights, 1.0)]})
        g = open_geometry(src)
        t0 = time.perf_counter()
        res = predict_volume(g, StageTiles([(predictor, [0])]), root / "out", VolumeOptions())
        wall = time.perf_counter() - t0
        peak = _peak_mb()
        load = os.getloadavg()[0]
        mb = src.stat().st_size / 2**20
        tiles = _tiles_per_line(SHAPE[2], SHAPE[1]) * SHAPE[0]
    traces = SHAPE[0] * SHAPE[1]
    s = res.seconds
    print(
        f"`saltseg segy predict`, {SHAPE[0]} x {SHAPE[1]} x {SHAPE[2]} synthetic volume "
        f"({traces:,} traces, {mb:.0f} MB float32), {recipe.model} (cpu profile, untrained "
        "weights: same speed), inline, flip TTA, stride 50\n"
    )
    print("| step | seconds | traces/s | MB/s |")
    print("|---|---:|---:|---:|")
    for step in ("read", "predict", "write"):
        print(f"| {step} | {s[step]:.1f} | {traces / s[step]:,.0f} | {mb / s[step]:.1f} |")
    print(f"| total (wall) | {wall:.1f} | {traces / wall:,.0f} | {mb / wall:.2f} |")
    print(
        f"\n{tiles:,} tiles ({tiles / SHAPE[0]:.0f} per inline), {tiles / s['predict']:.1f} "
        f"tiles/s ({2 * tiles / s['predict']:.1f} network passes/s with the flips). Peak RSS "
        f"of the predicting process (TensorFlow and the network included; the volume is "
        f"generated in another process): {peak:,.0f} MB. Load average at the end: "
        f"{load:.1f} on {os.cpu_count()} logical CPUs (other jobs shared them)."
    )


def _tiles_per_line(rows: int, cols: int) -> int:
    from saltseg.infer.tiling import origins

    return len(origins(rows, 50)) * len(origins(cols, 50))


if __name__ == "__main__":
    main()
