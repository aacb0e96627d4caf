"""Jigsaw mosaics on the real data: assembly figures and the post-processing's effect.

Usage: python bench/mosaics.py [--data DIR] [--oof FILE] [--threshold 0.5]

DIR defaults to $TGS_DATA, else ../shared/data/tgs-salt next to the repository; without
it the script prints a note and stops. It builds the mosaics of every train + test tile
(no cache) and prints a Markdown table: load and build time, peak RSS, mosaics of >= 2
tiles, tiles placed in them, the largest mosaic.

With out-of-fold probabilities (``--oof``, a ``saltseg.data.probs`` file; default
``/tmp/real/pred/oof_fold0_v5tiny.h5`` when present) it treats those tiles as unknown
(probability > threshold, black tiles empty), every other non-black train mask as known,
applies the vertical / half-vertical rules and prints the fold score before and after
and the tiles each rule changed.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from saltseg.core import metric
from saltseg.data.probs import read_probs
from saltseg.data.tiles import TGSDirectory, read_images
from saltseg.post import mosaic

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tgs-salt"
DEFAULT_OOF = Path("/tmp/real/pred/oof_fold0_v5tiny.h5")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_table(data: Path) -> mosaic.Mosaics:
    """Build the mosaics of all tiles and print the assembly table."""
    t0 = time.perf_counter()
    ids, paths = mosaic.tile_sources(data)
    images = read_images(paths)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    m = mosaic.build_mosaics(ids, images)
    t_build = time.perf_counter() - t1
    del images
    s = m.summary()
    print("| mosaics (real data) | value |")
    print("|---|---:|")
    print(f"| tiles (train + test) | {s['tiles']:,} |")
    print(f"| load images, s | {t_load:.1f} |")
    print(
        f"| build, s (edge matching + assembly) | {t_build:.1f} "
        f"({m.meta['match_seconds']:.1f} + {m.meta['assemble_seconds']:.2f}) |"
    )
    print(f"| peak RSS, MB | {peak_rss_mb():,.0f} |")
    print(f"| accepted edges (right / down) | {m.meta['right_pairs']} / {m.meta['down_pairs']} |")
    print(f"| mosaics (>= 2 tiles) | {s['mosaics']} |")
    share = s["tiles_in_mosaics"] / max(1, s["tiles"])
    print(f"| tiles placed in mosaics | {s['tiles_in_mosaics']:,} ({share:.1%}) |")
    print(
        f"| largest mosaic, tiles (rows x cols) | {s['largest']} "
        f"({s['largest_rows']} x {s['largest_cols']}) |"
    )
    print(f"| conflicting edges dropped | {s['conflicts']} |")
    return m


def fold_table(data: Path, m: mosaic.Mosaics, oof: Path, threshold: float) -> None:
    """Score the out-of-fold predictions before and after the post-processing."""
    probs = read_probs(oof)
    train = TGSDirectory(data).load_train(verify_rle=False)
    pos = {tid: k for k, tid in enumerate(train.ids)}
    missing = [i for i in probs.ids if i not in pos]
    if missing:
        print(f"\n_{oof}: {len(missing)} id(s) are not train ids (e.g. {missing[0]}); skipped._")
        return
    rows = np.array([pos[i] for i in probs.ids])
    pred = probs.float() > threshold
    pred[train.black[rows]] = False
    truth = train.masks[rows]
    fold = set(probs.ids)
    known = {
        tid: train.masks[k]
        for k, tid in enumerate(train.ids)
        if tid not in fold and not train.black[k]
    }
    new, report = mosaic.postprocess(m, probs.ids, pred, known)
    before, after = metric.image_scores(truth, pred), metric.image_scores(truth, new)
    in_mosaics = int(np.isin(probs.ids, np.asarray(m.ids)[m.mosaic >= 0]).sum())
    print()
    print(f"| post-processing on `{oof.name}` ({len(probs.ids)} tiles, > {threshold}) | value |")
    print("|---|---:|")
    print(f"| fold tiles in mosaics | {in_mosaics} |")
    print(f"| score before | {before.mean():.4f} |")
    print(f"| score after | {after.mean():.4f} ({after.mean() - before.mean():+.4f}) |")
    for rule in mosaic.RULES:
        print(
            f"| {rule}: tiles changed (assigned) | {report.changed[rule]} "
            f"({report.applied[rule]}) |"
        )
    diff = after - before
    print(f"| tiles improved / worsened | {int((diff > 0).sum())} / {int((diff < 0).sum())} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TGS_DATA") or str(DEFAULT_DATA))
    parser.add_argument("--oof", default=str(DEFAULT_OOF), help="out-of-fold probabilities")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not (data / "train.csv").is_file():
        print(f"_mosaics: skipped, no TGS data at {data} (set TGS_DATA)._")
        return 0
    m = build_table(data)
    oof = Path(args.oof)
    if oof.is_file():
        fold_table(data, m, oof, args.threshold)
    else:
        print(f"\n_Post-processing row skipped: no out-of-fold probabilities at {oof}._")
    return 0


if __name__ == "__main__":
    sys.exit(main())
