"""Data pipeline throughput: augmented, adapted training batches per second.

Usage: python bench/pipeline_throughput.py [--batches 40] [--batch-size 16]

Times ``TrainBatches.__getitem__`` (augmentation at 101x101 + the family's input adapter)
on synthetic tiles, in the calling thread, for every augmentation/adapter pair the
recipes use. The training loop overlaps this with the model step using worker threads;
the numbers show how much of a step it would cost without that overlap.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from saltseg.adapters import get_adapter
from saltseg.pipeline import TileSet, TrainBatches
from saltseg.synthetic import make_tile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    pairs = [make_tile(rng) for _ in range(512)]
    tiles = TileSet(
        [f"t{i}" for i in range(len(pairs))],
        np.stack([p[0] for p in pairs]),
        np.stack([p[1] for p in pairs]),
    )
    print("| adapter | augmentation | batch | batches/s | tiles/s |")
    print("|---|---|---:|---:|---:|")
    for adapter in ("bes-224", "phalanx-256", "phalanx-128"):
        family_aug = "bes" if adapter.startswith("bes") else "phalanx"
        for aug in (family_aug, "none"):
            ds = TrainBatches(
                tiles, get_adapter(adapter), args.batch_size, aug, epochs=100, workers=1
            )
            ds[0]
            t0 = time.perf_counter()
            for i in range(args.batches):
                ds[i]
            dt = time.perf_counter() - t0
            rate = args.batches / dt
            tiles = rate * args.batch_size
            print(f"| {adapter} | {aug} | {args.batch_size} | {rate:.1f} | {tiles:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
