"""Tile loading speed: decode the real TGS tiles (or a synthetic set) into arrays.

Usage: python bench/load_tiles.py [--data DIR] [--workers 1 2 4] [--repeats 2]

DIR defaults to $TGS_DATA. Prints a Markdown table of tiles/s for the test tiles
(18,000 in the real data) and the labelled train tiles with masks and RLE checks.
The first pass may read from a cold disk cache; the best of the repeats is reported
next to it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from saltseg.data.tiles import TGSDirectory, read_images


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TGS_DATA"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.data:
        print("no data: pass --data or set TGS_DATA", file=sys.stderr)
        return 2
    data = TGSDirectory(args.data)
    test_ids = data.test_ids()
    test_paths = [data.test_images_dir / f"{i}.png" for i in test_ids]
    n_train = len(data.train_ids())

    print(f"data: {Path(args.data).resolve()}  ({len(test_ids)} test, {n_train} train tiles)")
    print(f"cores available: {len(os.sched_getaffinity(0))}")
    print()
    print("| what | tiles | workers | first pass s | best s | best tiles/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for w in args.workers:
        times = [_time(lambda w=w: read_images(test_paths, workers=w)) for _ in range(args.repeats)]
        best = min(times)
        print(
            f"| test images | {len(test_paths)} | {w} | {times[0]:.2f} | {best:.2f} "
            f"| {len(test_paths) / best:,.0f} |"
        )
    times = [_time(lambda: data.load_train(verify_rle=True)) for _ in range(args.repeats)]
    best = min(times)
    print(
        f"| train images+masks+RLE check | {n_train} | default | {times[0]:.2f} | {best:.2f} "
        f"| {n_train / best:,.0f} |"
    )
    times = [
        _time(lambda: (data.load_train(verify_rle=False), data.load_test()))
        for _ in range(args.repeats)
    ]
    best = min(times)
    total = n_train + len(test_ids)
    print(
        f"| all tiles (train+test) | {total} | default | {times[0]:.2f} | {best:.2f} "
        f"| {total / best:,.0f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
