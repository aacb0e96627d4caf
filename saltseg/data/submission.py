"""RLE CSV files (``id,rle_mask``): reading, checked writing, and scoring one against another."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from saltseg import TILE
from saltseg.core import metric, rle
from saltseg.core.atomic import atomic_path
from saltseg.core.errors import DataError, OutputError
from saltseg.data.tiles import ID_RE, read_id_csv


def read_rle_csv(
    path: str | os.PathLike[str], shape: tuple[int, int] = (TILE, TILE)
) -> tuple[list[str], np.ndarray]:
    """Read an RLE CSV: ids in file order and the decoded bool masks ``(N, H, W)``."""
    p = Path(path)
    df = read_id_csv(p, ["id", "rle_mask"])
    ids = df["id"].tolist()
    masks = np.zeros((len(ids), *shape), dtype=bool)
    for i, (tid, r) in enumerate(zip(ids, df["rle_mask"], strict=True)):
        try:
            masks[i] = rle.decode(r, shape)
        except rle.RLEError as exc:
            raise DataError(f"{p}: id {tid!r}: bad rle_mask: {exc}") from None
    return ids, masks


def write_rle_csv(
    path: str | os.PathLike[str],
    ids: Sequence[str],
    masks: np.ndarray,
    order: Sequence[str] | None = None,
) -> None:
    """Write masks as an RLE CSV atomically, after checking it.

    Rows follow ``order`` (e.g. ``sample_submission.csv``) when given, else sorted ids.
    Every id must appear exactly once, round-trip through the CSV (:data:`ID_RE`), and
    ``order`` must name exactly the same ids. The written file is read back and compared
    before it replaces ``path``.
    """
    ids = list(ids)
    if len(ids) != len(masks):
        raise ValueError(f"{len(ids)} ids but {len(masks)} masks")
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise DataError(f"{path}: id {dup!r} would be written twice")
    bad = [i for i in ids if not ID_RE.match(i)]
    if bad:
        raise DataError(
            f"{path}: id {bad[0]!r} cannot be written to an RLE CSV and read back (allowed: "
            "ASCII letters, digits, '_', '.', '-')"
        )
    row_ids = sorted(ids) if order is None else list(order)
    check_same_ids(row_ids, ids, "the submission order", "the predictions")
    position = {tid: i for i, tid in enumerate(ids)}
    encoded = [rle.encode(masks[position[tid]]) for tid in row_ids]
    df = pd.DataFrame({"id": row_ids, "rle_mask": encoded})

    def reads_back(tmp: Path) -> None:
        back = pd.read_csv(tmp, dtype=str, keep_default_na=False, na_filter=False)
        if back["id"].tolist() != row_ids or back["rle_mask"].tolist() != encoded:
            raise OutputError(f"{path}: the written CSV does not read back as written")

    with atomic_path(path, verify=reads_back) as tmp, open(tmp, "w", newline="") as fh:
        df.to_csv(fh, index=False)


def check_same_ids(a: Sequence[str], b: Sequence[str], a_name: str, b_name: str) -> None:
    """Raise :class:`DataError` unless ``a`` and ``b`` hold the same ids, each once."""
    sa, sb = set(a), set(b)
    if len(sa) != len(a):
        raise DataError(f"{a_name}: repeated ids")
    if len(sb) != len(b):
        raise DataError(f"{b_name}: repeated ids")
    if sa == sb:
        return
    only_a, only_b = sorted(sa - sb), sorted(sb - sa)
    parts = []
    if only_a:
        parts.append(f"{len(only_a)} id(s) only in {a_name} (e.g. {', '.join(only_a[:3])})")
    if only_b:
        parts.append(f"{len(only_b)} id(s) only in {b_name} (e.g. {', '.join(only_b[:3])})")
    raise DataError("id sets differ: " + "; ".join(parts))


def evaluate_csvs(
    truth_csv: str | os.PathLike[str],
    pred_csv: str | os.PathLike[str],
    shape: tuple[int, int] = (TILE, TILE),
) -> pd.DataFrame:
    """Score a prediction CSV against a truth CSV; per-image scores sorted by id.

    Columns: ``id, score, truth_pixels, pred_pixels``. Mismatched id sets are an error.
    """
    t_ids, t_masks = read_rle_csv(truth_csv, shape)
    p_ids, p_masks = read_rle_csv(pred_csv, shape)
    check_same_ids(t_ids, p_ids, str(truth_csv), str(pred_csv))
    order = np.argsort(np.array(t_ids))
    t_sorted = [t_ids[i] for i in order]
    p_pos = {tid: i for i, tid in enumerate(p_ids)}
    p_idx = np.array([p_pos[tid] for tid in t_sorted], dtype=np.int64)
    truth = t_masks[order]
    pred = p_masks[p_idx]
    scores = metric.image_scores(truth, pred)
    return pd.DataFrame(
        {
            "id": t_sorted,
            "score": scores,
            "truth_pixels": truth.reshape(len(truth), -1).sum(axis=1),
            "pred_pixels": pred.reshape(len(pred), -1).sum(axis=1),
        }
    )
