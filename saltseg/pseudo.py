"""Pseudo-labels: confident test predictions of one round become training data of the next.

Confidence of a tile is the share of its pixels the blend is sure about:

    confidence = #{p < 0.2 or p > 0.8} / 101^2

and the pseudo-label is ``p > 0.5``. Three selection rules (the method spec):

- ``bes``: confidence >= 0.9 and not black (about 15.5k of the 18k test tiles).
- ``phalanx``: confidence >= 0.97 and not black, binned by mask size: every 2nd empty
  mask; masks of 1-19 pixels never; 20-500 pixels need confidence >= 0.99; larger masks
  up to 90% coverage. Each bin is shuffled (seeded) and dealt round-robin into the 5
  folds, so every fold gets the same mix (the original cut each bin into 5 fixed-size
  slices; about 8.3k tiles, ~1.6k per fold). The fold column adds a tile to that fold's
  training only.
- ``all``: every non-black tile (phalanx stage 3 pre-trains on all round-2 labels).

Output folder (``PREDICTIONS_DIR/<out>``): ``pseudo_labels.csv`` (``id,rle_mask``, and
``fold`` for the phalanx rule; what training reads), ``tiles.csv`` (every tile's
confidence, pixel count, black flag and whether it was chosen), ``masks/<id>.png``
(0/255) of the chosen tiles, and ``DONE.json`` written last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from saltseg.atomic import atomic_open, atomic_path, atomic_write_text
from saltseg.errors import ConfigError, DataError
from saltseg.probs import ProbMaps, dequantize, iter_rows
from saltseg.rle import encode

RULES = ("bes", "phalanx", "all")
PSEUDO_CSV = "pseudo_labels.csv"
N_PIXELS = 101 * 101


def confidence(prob: np.ndarray, low: float = 0.2, high: float = 0.8) -> np.ndarray:
    """Share of each tile's pixels with ``p < low`` or ``p > high``."""
    p = np.asarray(prob)
    sure = (p < low) | (p > high)
    return sure.reshape(len(p), -1).mean(axis=1)


def select_bes(conf: np.ndarray, black: np.ndarray, min_conf: float = 0.9) -> np.ndarray:
    return (conf >= min_conf) & ~black


def phalanx_bins(pixels: np.ndarray) -> np.ndarray:
    """Size bin of each mask: 0 empty, 1 (1-19 px, never used), 2 20-500, 3 <= 1/4,
    4 <= 1/2, 5 <= 3/4, 6 < 90%, 7 >= 90% (never used)."""
    n = N_PIXELS
    edges = [0, 19, 500, n / 4, n / 2, 3 * n / 4]
    bins = np.digitize(pixels, edges, right=True)
    bins[(pixels > 3 * n / 4) & (pixels < 0.9 * n)] = 6
    bins[pixels >= 0.9 * n] = 7
    return bins


def select_phalanx(
    conf: np.ndarray,
    pixels: np.ndarray,
    black: np.ndarray,
    n_folds: int = 5,
    seed: int = 0,
    min_conf: float = 0.97,
    small_conf: float = 0.99,
) -> tuple[np.ndarray, np.ndarray]:
    """Chosen tiles and their fold (-1 when not chosen); ids must be sorted."""
    bins = phalanx_bins(pixels)
    ok = (conf >= min_conf) & ~black & (bins != 1) & (bins != 7)
    ok &= (bins != 2) | (conf >= small_conf)
    empty = np.flatnonzero(ok & (bins == 0))
    ok[empty[1::2]] = False  # every 2nd empty mask
    folds = np.full(len(conf), -1, dtype=int)
    rng = np.random.default_rng(seed)
    for b in np.unique(bins[ok]):
        members = rng.permutation(np.flatnonzero(ok & (bins == b)))
        folds[members] = np.arange(len(members)) % n_folds
    return ok, folds


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
    if rule not in RULES:
        raise ConfigError(f"unknown pseudo-label rule {rule!r} (choose from {', '.join(RULES)})")
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
    folds = np.full(n, -1, dtype=int)
    if rule == "bes":
        chosen = select_bes(conf, black)
    elif rule == "phalanx":
        chosen, folds = select_phalanx(conf, pixels, black, n_folds, seed)
    else:
        chosen = ~black
    topped_up = 0
    if min_tiles and chosen.sum() < min_tiles:
        chosen, folds, topped_up = top_up(chosen, folds, conf, black, min_tiles, rule, n_folds)
    _write(out, maps, chosen, folds if rule == "phalanx" else None, conf, pixels, black, threshold)
    per_fold = (
        {int(k): int((folds == k).sum()) for k in range(n_folds)} if rule == "phalanx" else {}
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
    atomic_write_text(out / "DONE.json", json.dumps(done, indent=2) + "\n")
    return PseudoResult(out, n, int(chosen.sum()), per_fold, topped_up)


def top_up(
    chosen: np.ndarray,
    folds: np.ndarray,
    conf: np.ndarray,
    black: np.ndarray,
    min_tiles: int,
    rule: str,
    n_folds: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Add the most confident unchosen non-black tiles until ``min_tiles`` are chosen."""
    chosen, folds = chosen.copy(), folds.copy()
    spare = np.flatnonzero(~chosen & ~black)
    spare = spare[np.argsort(-conf[spare], kind="stable")][: max(0, min_tiles - chosen.sum())]
    chosen[spare] = True
    if rule == "phalanx":
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
    (out / "masks").mkdir(parents=True, exist_ok=True)
    done = out / "DONE.json"
    if done.exists():
        done.unlink()  # rewriting: the folder is incomplete until DONE.json is back
    rows: list[dict[str, Any]] = []
    for i in np.flatnonzero(chosen):
        tid = maps.ids[i]
        mask = dequantize(maps.q[i]) > threshold
        with atomic_path(out / "masks" / f"{tid}.png") as tmp:
            if not cv2.imwrite(str(tmp), mask.astype(np.uint8) * 255):
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
