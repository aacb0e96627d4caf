"""Pseudo-labels: confident test predictions of one round become training data of the next.

Confidence of a tile is the share of its pixels the blend is sure about:

    confidence = #{p < 0.2 or p > 0.8} / 101^2

and the pseudo-label is ``p > 0.5``. A selection rule is a registered function
``rule(conf, pixels, black, n_folds, seed) -> (chosen, folds or None)``: ``all`` here (every
non-black tile; phalanx stage 3 pre-trains on all round-2 labels), and the families' own
(``bes/pseudo.py``, ``phalanx/pseudo.py``). A rule that returns folds adds a ``fold``
column: that tile then trains only that fold.

Output folder (``PREDICTIONS_DIR/<out>``): ``pseudo_labels.csv`` (``id,rle_mask``, and
``fold`` for the phalanx rule; what training reads), ``tiles.csv`` (every tile's
confidence, pixel count, black flag and whether it was chosen), ``masks/<id>.png``
(0/255) of the chosen tiles, and ``DONE.json``. The folder is written as a staging
folder and swapped in whole when complete (the previous one stays until then).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from saltseg.config.layout import PSEUDO_CSV
from saltseg.core.atomic import atomic_folder, atomic_open, atomic_write_text
from saltseg.core.errors import ConfigError, DataError
from saltseg.core.lock import locked
from saltseg.core.registry import REGISTRY
from saltseg.core.rle import encode
from saltseg.data.probs import ProbMaps, dequantize, iter_rows


def confidence(prob: np.ndarray, low: float = 0.2, high: float = 0.8) -> np.ndarray:
    """Share of each tile's pixels with ``p < low`` or ``p > high``."""
    p = np.asarray(prob)
    sure = (p < low) | (p > high)
    return sure.reshape(len(p), -1).mean(axis=1)


def select_all(
    conf: np.ndarray, pixels: np.ndarray, black: np.ndarray, n_folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, None]:
    """The ``all`` rule: every non-black tile, no fold column."""
    return ~black, None


def select_all_tiles(
    conf: np.ndarray, pixels: np.ndarray, black: np.ndarray, n_folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, None]:
    """The ``all_tiles`` rule: every tile, black ones with empty masks (the original phalanx
    stage 3 pre-trained on all 18,000 test tiles)."""
    return np.ones(len(conf), dtype=bool), None


@dataclass
class PseudoResult:
    out: Path
    n_tiles: int
    n_chosen: int
    per_fold: dict[int, int]
    topped_up: int = 0


def make_pseudo_labels(
    maps: ProbMaps,
    black: np.ndarray,
    rule: str,
    out: Path,
    threshold: float = 0.5,
    n_folds: int = 5,
    seed: int = 0,
    min_tiles: int = 0,
) -> PseudoResult:
    """Choose and write the pseudo-labels of ``maps`` (sorted ids) by ``rule``.

    ``min_tiles``: when the rule chooses fewer, add the most confident other non-black
    tiles up to that many (for short ``tiny`` runs, whose networks are rarely confident;
    the full method leaves it at 0). The result says how many were added.
    """
    try:
        select: Callable[..., tuple[np.ndarray, np.ndarray | None]] = REGISTRY.get(
            "pseudo_rules", rule
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    n = len(maps.ids)
    if len(black) != n:
        raise DataError(f"{len(black)} black flags for {n} tiles")
    conf = np.empty(n)
    pixels = np.empty(n, dtype=np.int64)
    for lo, hi in iter_rows(n, 2048):
        p = dequantize(maps.q[lo:hi])
        conf[lo:hi] = confidence(p)
        pixels[lo:hi] = (p > threshold).reshape(hi - lo, -1).sum(axis=1)
    pixels[black] = 0
    chosen, folds = select(conf, pixels, black, n_folds, seed)
    topped_up = 0
    if min_tiles and chosen.sum() < min_tiles:
        chosen, folds, topped_up = top_up(chosen, folds, conf, black, min_tiles, n_folds)
    per_fold = (
        {int(k): int((folds == k).sum()) for k in range(n_folds)} if folds is not None else {}
    )
    done = {
        "rule": rule,
        "source": maps.meta.get("path"),
        "threshold": threshold,
        "n_tiles": n,
        "n_chosen": int(chosen.sum()),
        "topped_up": topped_up,
        "per_fold": per_fold,
    }
    with locked(out), atomic_folder(out) as staging:
        _write(staging, maps, chosen, folds, conf, pixels, black, threshold)
        atomic_write_text(staging / "DONE.json", json.dumps(done, indent=2) + "\n")
    return PseudoResult(out, n, int(chosen.sum()), per_fold, topped_up)


def top_up(
    chosen: np.ndarray,
    folds: np.ndarray | None,
    conf: np.ndarray,
    black: np.ndarray,
    min_tiles: int,
    n_folds: int,
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Add the most confident unchosen non-black tiles until ``min_tiles`` are chosen
    (dealt round-robin into the folds when the rule assigns folds)."""
    chosen = chosen.copy()
    folds = None if folds is None else folds.copy()
    spare = np.flatnonzero(~chosen & ~black)
    spare = spare[np.argsort(-conf[spare], kind="stable")][: max(0, min_tiles - chosen.sum())]
    chosen[spare] = True
    if folds is not None:
        folds[spare] = np.arange(len(spare)) % n_folds
    return chosen, folds, len(spare)


def _write(
    out: Path,
    maps: ProbMaps,
    chosen: np.ndarray,
    folds: np.ndarray | None,
    conf: np.ndarray,
    pixels: np.ndarray,
    black: np.ndarray,
    threshold: float,
) -> None:
    """Write the folder's files into ``out`` (a staging folder swapped in when complete)."""
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for i in np.flatnonzero(chosen):
        tid = maps.ids[i]
        mask = (dequantize(maps.q[i]) > threshold) & ~black[i]  # black tiles: empty
        if not cv2.imwrite(str(out / "masks" / f"{tid}.png"), mask.astype(np.uint8) * 255):
            raise DataError(f"{out / 'masks' / tid}.png: could not be written")
        row: dict[str, Any] = {"id": tid, "rle_mask": encode(mask)}
        if folds is not None:
            row["fold"] = int(folds[i])
        rows.append(row)
    cols = ["id", "rle_mask"] + (["fold"] if folds is not None else [])
    with atomic_open(out / PSEUDO_CSV, "w", newline="") as fh:
        pd.DataFrame(rows, columns=cols).to_csv(fh, index=False)
    table = pd.DataFrame(
        {
            "id": maps.ids,
            "confidence": np.round(conf, 5),
            "pixels": pixels,
            "black": black.astype(int),
            "chosen": chosen.astype(int),
        }
    )
    with atomic_open(out / "tiles.csv", "w", newline="") as fh:
        table.to_csv(fh, index=False)


def is_complete(out: Path, source: Path, rule: str) -> bool:
    """``out`` holds this rule's pseudo-labels of ``source`` and is newer than it."""
    done = out / "DONE.json"
    if not done.is_file() or not source.is_file():
        return False
    try:
        info = json.loads(done.read_text())
    except (OSError, ValueError):
        return False
    same = info.get("rule") == rule and info.get("source") == str(source)
    return same and done.stat().st_mtime_ns >= source.stat().st_mtime_ns
