"""Data pipeline throughput: augmented, adapted training batches per second.

Usage: python bench/pipeline_throughput.py [--batches 40] [--batch-size 16] [--steps 30]

1. Times ``TrainBatches.__getitem__`` (augmentation at 101x101 + the family's input
   adapter) on synthetic tiles, in the calling thread, for every augmentation/adapter
   pair the recipes use.
2. Trains the tiny networks for ``--steps`` steps through ``model.fit`` three ways: fed
   by ``TrainBatches`` with augmentation, without it, and from one batch already in
   memory. Equal steps/s means the model never waits for the data.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from saltseg.data.adapters import get_adapter
from saltseg.data.synthetic import make_tile
from saltseg.data.tiles import TileSet
from saltseg.train.batches import TrainBatches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
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
            per_s = rate * args.batch_size
            print(f"| {adapter} | {aug} | {args.batch_size} | {rate:.1f} | {per_s:,.0f} |")
    print()
    print("| network | fed by | steps/s | tiles/s |")
    print("|---|---|---:|---:|")
    for name, aug in (("bes-tiny", "bes"), ("phalanx-v5-tiny", "phalanx")):
        for fed in (
            f"TrainBatches, {aug} augmentation",
            "TrainBatches, no augmentation",
            "arrays in memory",
        ):
            rate = _fit_rate(
                name,
                tiles,
                aug if "augmentation" in fed and "no " not in fed else "none",
                fed == "arrays in memory",
                args,
            )
            print(f"| {name} | {fed} | {rate:.2f} | {rate * args.batch_size:,.0f} |", flush=True)
    return 0


def _fit_rate(name: str, tiles: TileSet, aug: str, in_memory: bool, args) -> float:
    """Training steps per second of a tiny network through ``model.fit``."""
    import keras

    from saltseg.infer.networks import build_model
    from saltseg.nets.losses import get_loss
    from saltseg.nets.zoo import get_model_spec

    spec = get_model_spec(name)
    keras.backend.clear_session()
    model = build_model(spec)
    model.compile(keras.optimizers.Adam(1e-3), loss=get_loss("bce"))
    adapter = get_adapter(spec.adapter)
    batches = TrainBatches(tiles, adapter, args.batch_size, aug, epochs=1000, workers=2)
    steps = args.steps
    if in_memory:
        x, y = batches[0]
        data = (np.repeat(x, steps, axis=0), np.repeat(y, steps, axis=0))
        model.fit(data[0][: args.batch_size], data[1][: args.batch_size], verbose=0)
        t0 = time.perf_counter()
        model.fit(*data, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False)
    else:
        model.fit(batches, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
        t0 = time.perf_counter()
        model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return steps / (time.perf_counter() - t0)


if __name__ == "__main__":
    sys.exit(main())
