"""Importing the original weights, and predicting with all 38 of them, on this CPU.

Full-width fake originals in the published formats (random values; tests/original_fakes.py):
one b.e.s. Keras 2 HDF5 and one phalanx PyTorch 0.4 legacy .pth. Each is read
(saltseg.data.weights_io), assigned to our network (saltseg.nets.transfer) and saved as our
.weights.h5, timed separately; ``saltseg weights import`` does this for 20 + 18 files.
Prediction: full b.e.s. (224) and phalanx v5 (128) networks on ``--batch`` tiles with flip
TTA; the 38-model ensemble's rate is one tile over ``20 t_bes + 18 t_phalanx``, the time
per tile of each network with TTA (weights loading left out). Prints a Markdown table.

    python bench/original_weights.py [--batch 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16, help="tiles per timed batch")
    args = parser.parse_args(argv)
    sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    from cpu_budget import forward_flops
    from original_fakes import bes_layers, phalanx_state, write_keras2_h5, write_torch_legacy

    from bes.weights_map import source_of as bes_source
    from phalanx.weights_map import source_of as phalanx_source
    from saltseg.data.adapters import get_adapter
    from saltseg.data.weights_io import read_weights
    from saltseg.infer.networks import build_model, predict_probabilities, save_weights
    from saltseg.nets.transfer import transfer
    from saltseg.nets.zoo import get_model_spec

    rng = np.random.default_rng(0)
    rows = []
    tiles = rng.integers(0, 256, (args.batch, 101, 101), dtype=np.uint8)
    per_tile = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("bes", "fold_0.hdf5", "keras2", bes_source, 20),
            ("phalanx-v5", "model_128_res34v500.pth", "torch", phalanx_source, 18),
        ]
        for name, fname, convention, source_of, count in cases:
            path = Path(tmp) / fname
            if convention == "keras2":
                write_keras2_h5(path, bes_layers(rng))
            else:
                write_torch_legacy(path, phalanx_state(rng, "v5"))
            spec = get_model_spec(name)
            model = build_model(spec)
            t0 = time.perf_counter()
            source = read_weights(path)
            t1 = time.perf_counter()
            transfer(model, source, source_of, convention, path)
            t2 = time.perf_counter()
            save_weights(model, Path(tmp) / "out.weights.h5")
            t3 = time.perf_counter()
            adapter = get_adapter(spec.adapter)
            predict_probabilities(model, tiles[:2], adapter, None, True, flip_tta=True)  # warm-up
            t4 = time.perf_counter()
            predict_probabilities(model, tiles, adapter, None, True, args.batch, flip_tta=True)
            per_tile[name] = (time.perf_counter() - t4) / len(tiles)
            gflop = forward_flops(model) / 1e9
            rows.append(
                (name, fname, path.stat().st_size / 2**20, t1 - t0, t2 - t1, t3 - t2, count, gflop)
            )
    lines = [
        "| network | file (full width) | MB | read s | map s | save s | files | GFLOP/tile |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, fname, mb, read, mapped, save, count, gflop in rows:
        lines.append(
            f"| {name} | {fname} | {mb:.0f} | {read:.2f} | {mapped:.2f} | {save:.2f} "
            f"| {count} | {gflop:.2f} |"
        )
    total_import = sum((r[3] + r[4] + r[5]) * r[6] for r in rows)
    ensemble_s = 20 * per_tile["bes"] + 18 * per_tile["phalanx-v5"]
    gflop_tile = 2 * (20 * rows[0][7] + 18 * rows[1][7])
    lines += [
        "",
        "| 38-model prediction (flip TTA) | value |",
        "|---|---|",
        f"| import of 20 + 18 files (estimated from the above) | {total_import:.0f} s |",
        f"| b.e.s. network, with TTA | {1 / per_tile['bes']:.2f} tiles/s |",
        f"| phalanx v5 network, with TTA | {1 / per_tile['phalanx-v5']:.2f} tiles/s |",
        f"| **38-model ensemble** | **{1 / ensemble_s:.3f} tiles/s** "
        f"({ensemble_s:.1f} s per tile; 18,000 test tiles: {18000 * ensemble_s / 3600:.1f} h) |",
        f"| forward GFLOP per tile (38 networks x 2 for TTA) | {gflop_tile:.0f} |",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
