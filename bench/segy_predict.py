"""``segy predict`` throughput: a 200 x 200 x 400-sample synthetic volume, the cpu network.

The volume is :func:`saltseg.data.synthetic.make_volume` written as SEG-Y (float32); the
network is the cpu profile's (phalanx-v5-cpu, phalanx stage 1) with freshly initialised
weights saved to a file: a forward pass costs the same whatever the weights, so the figures
hold for trained weights (nothing is trained here). Inline direction, flip TTA on (the
defaults of ``saltseg segy predict``), stride 50. Prints a Markdown table (run_all.py).
"""

from __future__ import annotations

import resource
import tempfile
import time
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


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        vol, _ = make_volume(0, *SHAPE)
        src = write_volume(root / "in.sgy", vol)
        del vol
        recipe = load_stage("phalanx", "stage1", "cpu")
        weights = root / "init.weights.h5"
        save_weights(build_model(get_model_spec(recipe.model)), weights)
        predictor = StagePredictor(recipe, {0: [WeightFile(0, weights, 1.0)]})
        g = open_geometry(src)
        t0 = time.perf_counter()
        res = predict_volume(g, StageTiles([(predictor, [0])]), root / "out", VolumeOptions())
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mb = src.stat().st_size / 2**20
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
    print(f"\npeak RSS of the process (TensorFlow included): {peak:,.0f} MB")


if __name__ == "__main__":
    main()
