"""What one fold trains and validates on: labelled tiles split by the recipe's folds, and
pseudo-labelled test tiles (``pseudo_labels.csv``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from saltseg import TILE
from saltseg.config.layout import PSEUDO_CSV
from saltseg.config.recipe import StageRecipe
from saltseg.config.settings import Settings
from saltseg.core.errors import DataError
from saltseg.core.rle import RLEError, decode
from saltseg.data.folds import fold_assignment
from saltseg.data.tiles import TGSDirectory, TileSet, read_images


@dataclass
class FoldData:
    """What one fold trains and validates on."""

    train: TileSet
    val: TileSet
    val_black: np.ndarray
    pseudo: TileSet | None
    source: TGSDirectory | None = None  # where test tiles to self-label come from
    self_labelled: TileSet | None = None  # set by a phase with ``self_labels``


def limit_index(n: int, limit: int | None, seed: int, salt: int) -> np.ndarray:
    """Indices ``0..n-1``, or a seeded sorted sample of ``limit`` of them."""
    idx = np.arange(n)
    if limit is None or limit >= n:
        return idx
    return np.sort(np.random.default_rng([seed, salt]).choice(n, size=limit, replace=False))


def load_pseudo_labels(
    folder: Path, test_images_dir: Path, fold: int | None, limit: int | None, seed: int
) -> TileSet:
    """Pseudo-labelled test tiles from ``folder/pseudo_labels.csv`` (``id,rle_mask`` and
    optionally ``fold``: rows of other folds are left out for fold ``fold``)."""
    csv = folder / PSEUDO_CSV
    if not csv.is_file():
        raise DataError(
            f"{csv}: pseudo-labels not found (run the previous round and 'saltseg pseudo' first)"
        )
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    for col in ("id", "rle_mask"):
        if col not in df.columns:
            raise DataError(f"{csv}: missing column {col!r}")
    if "fold" in df.columns and fold is not None:
        df = df[pd.to_numeric(df["fold"], errors="coerce") == fold]
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    df = df.iloc[limit_index(len(df), limit, seed, 2)]
    if df.empty:
        raise DataError(f"{csv}: no pseudo-labelled tiles for this run")
    masks = np.zeros((len(df), TILE, TILE), dtype=bool)
    for i, (tid, r) in enumerate(zip(df["id"], df["rle_mask"], strict=True)):
        try:
            masks[i] = decode(r)
        except RLEError as exc:
            raise DataError(f"{csv}: id {tid!r}: bad rle_mask: {exc}") from None
    ids = df["id"].tolist()
    paths = [test_images_dir / f"{i}.png" for i in ids]
    missing = [i for i, p in zip(ids, paths, strict=True) if not p.is_file()]
    if missing:
        raise DataError(f"{csv}: id {missing[0]!r} has no image in {test_images_dir}")
    return TileSet(ids, read_images(paths), masks)


def prepare_fold(
    recipe: StageRecipe, settings: Settings, fold: int | None, need_pseudo: bool
) -> FoldData:
    """Train/validation tiles of ``fold`` (``None``: validate on every labelled tile)."""
    data = TGSDirectory(settings.data_dir)
    train = data.load_train(verify_rle=False)
    folds = fold_assignment(recipe, data, train)
    is_val = folds == fold if fold is not None else np.ones(len(train), dtype=bool)
    usable = ~is_val & (~train.black | recipe.train_black_tiles)  # black: only if asked
    tr_idx = np.flatnonzero(usable)
    tr_idx = tr_idx[limit_index(len(tr_idx), recipe.max_train_tiles, recipe.seed, 0)]
    va_idx = np.flatnonzero(is_val)
    va_idx = va_idx[limit_index(len(va_idx), recipe.max_val_tiles, recipe.seed, 1)]
    all_tiles = TileSet(train.ids, train.images, train.masks)
    pseudo = None
    if need_pseudo:
        assert recipe.pseudo_labels is not None
        pseudo = load_pseudo_labels(
            settings.predictions_dir / recipe.pseudo_labels,
            data.test_images_dir,
            fold,
            recipe.max_pseudo_tiles,
            recipe.seed,
        )
    return FoldData(
        train=all_tiles.subset(tr_idx),
        val=all_tiles.subset(va_idx),
        val_black=train.black[va_idx],
        pseudo=pseudo,
        source=data,
    )
