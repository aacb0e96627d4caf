"""The ensemble: weighted blend of stage probabilities -> masks -> submission CSV.

    p = sum_i w_i * n_i(p_i) / sum_i w_i,     mask = p > threshold,   black tiles -> empty

where ``n_i`` is min-max normalisation over the whole array,
``(p - min p) / (max p - min p)``, for phalanx predictions (the original normalised the
phalanx array before blending it 0.5/0.5 with b.e.s.) and the identity otherwise.
Rows follow ``sample_submission.csv`` when it names exactly the predicted ids, else
sorted ids; every id appears once, and the CSV is checked before it is written
atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saltseg.core.errors import ConfigError, DataError
from saltseg.core.registry import family_names, get_family
from saltseg.data.probs import ProbMaps, dequantize, iter_rows, quantize, write_probs
from saltseg.data.submission import check_same_ids, write_rle_csv

CHUNK = 2048


def minmax_range(maps: ProbMaps) -> tuple[float, float]:
    """Smallest and largest probability of a whole prediction."""
    return float(maps.q.min()) / 255.0, float(maps.q.max()) / 255.0


def wants_minmax(maps: ProbMaps, mode: str) -> bool:
    """``auto``: predictions of a family registered with ``minmax_blend`` (phalanx) are
    normalised; ``all`` / ``none`` force it."""
    if mode == "auto":
        family = maps.meta.get("family")
        return family in family_names() and get_family(family).minmax_blend
    return mode == "all"


@dataclass
class Blend:
    ids: list[str]
    q: np.ndarray  # uint8 blended probabilities
    normalised: list[bool]


def blend(
    inputs: Sequence[ProbMaps], weights: Sequence[float] | None = None, minmax: str = "auto"
) -> Blend:
    """Weighted mean of predictions of the same ids (aligned by id), in chunks."""
    if not inputs:
        raise ConfigError("ensemble: no predictions to blend")
    weights = list(weights) if weights is not None else [1.0] * len(inputs)
    if len(weights) != len(inputs) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"ensemble: need {len(inputs)} non-negative weights, got {weights}")
    ids = inputs[0].ids
    aligned = [inputs[0]]
    for m in inputs[1:]:
        check_same_ids(
            ids, m.ids, inputs[0].meta.get("path", "input 1"), m.meta.get("path", "input")
        )
        aligned.append(m if m.ids == ids else m.take(ids))
    norm = [wants_minmax(m, minmax) for m in aligned]
    ranges = [minmax_range(m) if n else (0.0, 1.0) for m, n in zip(aligned, norm, strict=True)]
    total = float(sum(weights))
    out = np.empty((len(ids), *aligned[0].q.shape[1:]), dtype=np.uint8)
    for lo, hi in iter_rows(len(ids), CHUNK):
        acc = np.zeros((hi - lo, *out.shape[1:]), dtype=np.float32)
        for m, w, (a, b) in zip(aligned, weights, ranges, strict=True):
            p = dequantize(m.q[lo:hi])
            if b > a:
                p = (p - a) / (b - a)
            acc += np.float32(w / total) * p
        out[lo:hi] = quantize(acc)
    return Blend(list(ids), out, norm)


def to_masks(q: np.ndarray, threshold: float, black: np.ndarray) -> np.ndarray:
    """Masks ``p > threshold`` with black tiles forced empty."""
    if not 0.0 <= threshold < 1.0:
        raise ConfigError(f"threshold must be in [0, 1), got {threshold}")
    masks = dequantize(q) > threshold
    masks[np.asarray(black, dtype=bool)] = False
    return masks


def submission_order(sample_csv: Path | None, ids: Sequence[str]) -> list[str] | None:
    """``sample_submission.csv`` order when it lists exactly ``ids``, else ``None``."""
    if sample_csv is None or not sample_csv.is_file():
        return None
    from saltseg.data.tiles import read_id_csv

    order = list(read_id_csv(sample_csv, ["id"])["id"])
    return order if set(order) == set(ids) and len(order) == len(ids) else None


def write_submission(
    path: Path, ids: Sequence[str], masks: np.ndarray, order: Sequence[str] | None
) -> None:
    """Write the RLE CSV (checked: every id once, same ids as the order) atomically."""
    if len(ids) != len(masks):
        raise DataError(f"{path}: {len(ids)} ids but {len(masks)} masks")
    write_rle_csv(path, ids, masks, order=order)


def save_blend(
    path: Path, b: Blend, sources: Sequence[str], weights: Sequence[float], images_dir: Path
) -> Path:
    """Write the blended probabilities (input of ``saltseg pseudo``)."""
    meta = {
        "family": "ensemble",
        "set": "test",
        "images_dir": str(images_dir.resolve()),
        "sources": list(sources),
        "weights": list(weights),
        "minmax": b.normalised,
    }
    return write_probs(path, b.ids, b.q, meta)
