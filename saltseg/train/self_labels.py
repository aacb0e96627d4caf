"""Pseudo-labels made inside one training run (a phase's ``self_labels`` block).

At the start of such a phase, the weights it starts from (its ``init``: the previous
phase's) label a seeded sample of the test tiles (black tiles left out), with horizontal-flip TTA:

    label = mean(sigmoid(f(x)), fliplr(sigmoid(f(fliplr(x))))) > threshold

and the phase trains on the fold's labelled tiles plus these. Every labelled tile is kept:
a confidence rule (``saltseg.post.pseudo``: the share of pixels with p < 0.2 or p > 0.8) keeps
about 1% of the tiles of a Lovasz-trained network, whose sigmoid(logit) is a margin, not a
calibrated probability. The labels are written to ``<phase>/self_labels/pseudo_labels.csv``
(``id,rle_mask``; then ``DONE.json``), so that a resumed run trains on the same tiles.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saltseg.config.layout import PSEUDO_CSV
from saltseg.config.recipe import SelfLabelConfig
from saltseg.core.atomic import atomic_write_text
from saltseg.core.errors import DataError
from saltseg.core.rle import encode
from saltseg.data.adapters import get_adapter
from saltseg.data.tiles import TGSDirectory, TileSet, is_black, read_images
from saltseg.infer.networks import load_model_weights, main_output, predict_probabilities
from saltseg.nets.zoo import ModelSpec
from saltseg.train.folddata import load_pseudo_labels


def sample_test_ids(data: TGSDirectory, n: int, seed: int) -> list[str]:
    """``n`` test ids (all when fewer), a seeded sample independent of listing order."""
    ids = sorted(data.test_ids())
    if not ids:
        raise DataError(f"{data.test_images_dir}: no test tiles to self-label")
    if n >= len(ids):
        return ids
    pick = np.random.default_rng([seed, 3]).choice(len(ids), size=n, replace=False)
    return [ids[i] for i in np.sort(pick)]


def write_labels(folder: Path, ids: list[str], masks: np.ndarray, info: dict) -> None:
    """``pseudo_labels.csv`` then ``DONE.json`` (both atomic)."""
    folder.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame({"id": ids, "rle_mask": [encode(m) for m in masks]})
    atomic_write_text(folder / PSEUDO_CSV, df.to_csv(index=False))
    atomic_write_text(folder / "DONE.json", json.dumps(info, indent=1))


def read_labels(folder: Path, data: TGSDirectory) -> TileSet | None:
    """The labels a previous (killed) run of the phase made, or ``None``."""
    if not (folder / "DONE.json").is_file():
        return None
    return load_pseudo_labels(folder, data.test_images_dir, None, None, 0)


def self_label(
    build: Callable[[], Any],
    spec: ModelSpec,
    weights: Path,
    data: TGSDirectory,
    cfg: SelfLabelConfig,
    folder: Path,
    seed: int,
    label: str = "self-labels",
) -> TileSet:
    """Label ``cfg.tiles`` test tiles of ``data`` with ``weights`` (loaded into the network
    ``build()`` returns) into ``folder``; reuse the labels a previous run wrote there (then
    no network is built)."""
    done = read_labels(folder, data)
    if done is not None:
        print(f"{label}: {len(done)} test tiles labelled before, reused", flush=True)
        return done
    t0 = time.perf_counter()
    ids = sample_test_ids(data, cfg.tiles, seed)
    images = read_images([data.test_images_dir / f"{i}.png" for i in ids])
    keep = ~is_black(images)
    if not keep.any():
        raise DataError(f"{data.test_images_dir}: every sampled test tile is black")
    ids = [i for i, k in zip(ids, keep, strict=True) if k]
    images = images[keep]
    model = build()
    load_model_weights(model, weights)
    prob = predict_probabilities(
        model,
        images,
        get_adapter(spec.adapter),
        main_output(spec, model),
        logits=True,
        batch_size=32,
        flip_tta=cfg.flip_tta,
    )
    masks = prob > cfg.threshold
    seconds = time.perf_counter() - t0
    info = {
        "weights": str(weights),
        "tiles": len(ids),
        "black_left_out": int((~keep).sum()),
        "with_salt": int(masks.reshape(len(masks), -1).any(axis=1).sum()),
        "seconds": round(seconds, 1),
    }
    write_labels(folder, ids, masks, info)
    print(
        f"{label}: {len(ids)} test tiles labelled in {seconds:.0f} s "
        f"({info['with_salt']} with salt, {info['black_left_out']} black left out)",
        flush=True,
    )
    return TileSet(ids, images, masks)
