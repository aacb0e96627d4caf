"""Cross-validation folds.

* ``depth``: the original's folds. All ids of ``depths.csv`` (train and test) are sorted
  by depth ``z`` (ties broken by id, so the order is deterministic), fold = rank mod K,
  and the train ids keep their fold.
* ``coverage``: stratified by salt coverage class (empty, then tenths of coverage) with
  scikit-learn's ``StratifiedKFold`` (shuffled with a seed).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from saltseg.config.recipe import StageRecipe
from saltseg.core.atomic import atomic_open
from saltseg.core.errors import DataError
from saltseg.data.tiles import TGSDirectory, TrainSet, read_id_csv

FoldMethod = Literal["depth", "coverage"]


def depth_folds(train_ids: Sequence[str], depths: pd.Series, n_folds: int = 5) -> np.ndarray:
    """Fold per train id: rank of the id among all depth-sorted ids, mod ``n_folds``."""
    missing = [i for i in train_ids if i not in depths.index]
    if missing:
        raise DataError(
            f"depths.csv has no depth for train id {missing[0]!r} ({len(missing)} missing)"
        )
    order = pd.DataFrame({"id": depths.index.to_numpy(), "z": depths.to_numpy()})
    order = order.sort_values(["z", "id"], kind="stable").reset_index(drop=True)
    fold_of = pd.Series(np.arange(len(order)) % n_folds, index=order["id"].to_numpy())
    return fold_of.loc[list(train_ids)].to_numpy(dtype=np.int64)


COVERAGE_LABELS = ("empty", *(f"{k}-{k + 10}%" for k in range(0, 100, 10)))
"""Coverage classes: empty, then ten 10% steps of the salt share, each closed on the right
(``0-10%`` is more than 0 and at most 10%)."""


def coverage_class(pixels: np.ndarray, total: int) -> np.ndarray:
    """Index into :data:`COVERAGE_LABELS` for salt-pixel counts out of ``total`` pixels:
    0 for an empty mask, else ``ceil(10 * pixels / total)`` in 1..10 (integer arithmetic, so
    a mask with exactly 10% salt is in ``0-10%``, as the competition's stratified folds
    counted it)."""
    p = np.asarray(pixels, dtype=np.int64)
    return np.where(p == 0, 0, np.clip(-((-p * 10) // total), 1, 10))


def mask_coverage_class(masks: np.ndarray) -> np.ndarray:
    """:func:`coverage_class` of each boolean mask of ``(N, H, W)``."""
    m = np.asarray(masks).reshape(len(masks), -1)
    return coverage_class(m.sum(axis=1), m.shape[1])


def coverage_folds(masks: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Folds stratified by coverage class; neighbouring classes with fewer than ``n_folds``
    members are merged so every stratum can be spread over the folds."""
    if len(masks) < n_folds:
        raise DataError(f"cannot split {len(masks)} labelled tile(s) into {n_folds} folds")
    classes = merge_rare_classes(mask_coverage_class(masks), n_folds)
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.empty(len(classes), dtype=np.int64)
    for k, (_, val) in enumerate(skf.split(np.zeros(len(classes)), classes)):
        folds[val] = k
    return folds


def merge_rare_classes(classes: np.ndarray, min_count: int) -> np.ndarray:
    """Relabel sorted integer classes into consecutive buckets of at least ``min_count``."""
    values, counts = np.unique(classes, return_counts=True)
    bucket_of: dict[int, int] = {}
    bucket, filled = 0, 0
    for v, c in zip(values.tolist(), counts.tolist(), strict=True):
        bucket_of[v] = bucket
        filled += c
        if filled >= min_count:
            bucket, filled = bucket + 1, 0
    if 0 < filled < min_count and bucket > 0:  # a short last bucket joins the previous one
        for v in values.tolist():
            if bucket_of[v] == bucket:
                bucket_of[v] = bucket - 1
    return np.array([bucket_of[v] for v in classes.tolist()], dtype=np.int64)


def write_folds(path: str | os.PathLike[str], ids: Sequence[str], folds: np.ndarray) -> None:
    """Write ``id,fold`` rows sorted by id, atomically."""
    df = pd.DataFrame({"id": list(ids), "fold": np.asarray(folds, dtype=np.int64)})
    df = df.sort_values("id", kind="stable")
    with atomic_open(path, "w", newline="") as fh:
        df.to_csv(fh, index=False)


def read_folds(path: str | os.PathLike[str]) -> pd.Series:
    """Read an ``id,fold`` CSV into a Series indexed by id."""
    df = read_id_csv(Path(path), ["id", "fold"])
    fold = pd.to_numeric(df["fold"], errors="coerce")
    if fold.isna().any() or (fold < 0).any() or (fold % 1 != 0).any():
        row = int(np.flatnonzero((fold.isna() | (fold < 0) | (fold % 1 != 0)).to_numpy())[0])
        raise DataError(
            f"{path}: data row {row + 1}: id {df['id'].iloc[row]!r} has an invalid fold "
            f"{df['fold'].iloc[row]!r} (want an integer >= 0)"
        )
    return pd.Series(fold.to_numpy(dtype=np.int64), index=df["id"].to_numpy(), name="fold")


def external_folds(path: Path, ids: Sequence[str], n_folds: int) -> np.ndarray:
    """Fold of every id in ``ids`` from a fold CSV (``id,fold`` and any other columns, as
    the original's ``train_proc_v2_gr.csv``): every id present, folds in ``0..n_folds-1``."""
    folds = read_folds(path)
    missing = [i for i in ids if i not in folds.index]
    if missing:
        raise DataError(f"{path}: no fold for train id {missing[0]!r} ({len(missing)} missing)")
    out = folds.loc[list(ids)].to_numpy(dtype=np.int64)
    if (out >= n_folds).any():
        bad = list(ids)[int(np.flatnonzero(out >= n_folds)[0])]
        raise DataError(f"{path}: id {bad!r} is in fold {folds[bad]}, outside 0..{n_folds - 1}")
    return out


def fold_assignment(recipe: StageRecipe, data: TGSDirectory, train: TrainSet) -> np.ndarray:
    """Fold of every labelled tile (sorted ids): the recipe's ``fold_file`` (relative to the
    data folder), else its method."""
    if recipe.fold_file:
        path = Path(recipe.fold_file)
        return external_folds(
            path if path.is_absolute() else data.root / path, train.ids, recipe.n_folds
        )
    if recipe.fold_method == "depth":
        return depth_folds(train.ids, data.depths(), recipe.n_folds)
    return coverage_folds(train.masks, recipe.n_folds, recipe.seed)
