"""Kaggle run-length encoding of binary masks.

Convention (TGS Salt): pixels are numbered 1..H*W top-to-bottom, then left-to-right
(column-major order); a mask is written as space-separated ``start length`` pairs in
ascending order; the empty mask is the empty string.
"""

from __future__ import annotations

import numpy as np

from saltseg import TILE


class RLEError(ValueError):
    """An RLE string that does not describe a mask of the expected shape."""


def encode(mask: np.ndarray) -> str:
    """Encode a 2-D binary mask as a Kaggle RLE string."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode expects a 2-D mask, got shape {mask.shape}")
    flat = mask.astype(bool).ravel(order="F")
    padded = np.concatenate(([False], flat, [False]))
    changes = np.flatnonzero(padded[1:] != padded[:-1]) + 1
    if changes.size == 0:
        return ""
    starts, ends = changes[0::2], changes[1::2]
    runs = np.empty(changes.size, dtype=np.int64)
    runs[0::2] = starts
    runs[1::2] = ends - starts
    return " ".join(map(str, runs.tolist()))


def decode(rle: str | float | None, shape: tuple[int, int] = (TILE, TILE)) -> np.ndarray:
    """Decode a Kaggle RLE string into a bool mask of ``shape``.

    ``None``, NaN (as pandas reads an empty CSV cell) and blank strings give an empty mask.
    Raises :class:`RLEError` for malformed, unordered, overlapping or out-of-range runs.
    """
    h, w = shape
    size = h * w
    out = np.zeros(size, dtype=bool)
    if rle is None or (isinstance(rle, float) and np.isnan(rle)):
        return out.reshape((w, h)).T
    if not isinstance(rle, str):
        raise RLEError(f"RLE must be a string, got {type(rle).__name__}")
    text = rle.strip()
    if not text:
        return out.reshape((w, h)).T
    try:
        nums = np.array(text.split(), dtype=np.int64)
    except ValueError as exc:
        raise RLEError(f"RLE has a non-integer token: {exc}") from None
    if nums.size % 2:
        raise RLEError(
            f"RLE has an odd number of values ({nums.size}); expected start/length pairs"
        )
    starts, lengths = nums[0::2], nums[1::2]
    if (starts < 1).any():
        raise RLEError("RLE start below 1 (pixels are 1-indexed)")
    if (lengths < 1).any():
        raise RLEError("RLE run length below 1")
    ends = starts + lengths - 1
    if (ends > size).any():
        raise RLEError(f"RLE run ends at pixel {int(ends.max())}, beyond the {h}x{w} mask ({size})")
    if (starts[1:] <= ends[:-1]).any():
        raise RLEError("RLE runs are not in ascending order or overlap")
    # Vectorised fill: +1 at each start, -1 after each end, cumulative sum.
    delta = np.zeros(size + 1, dtype=np.int32)
    np.add.at(delta, starts - 1, 1)
    np.add.at(delta, ends, -1)
    out = np.cumsum(delta[:-1]) > 0
    return out.reshape((w, h)).T


def encode_many(masks: np.ndarray) -> list[str]:
    """Encode a stack ``(N, H, W)`` of masks."""
    return [encode(m) for m in masks]


def decode_many(
    rles: list[str | float | None], shape: tuple[int, int] = (TILE, TILE)
) -> np.ndarray:
    """Decode a list of RLE strings into a bool stack ``(N, H, W)``."""
    out = np.zeros((len(rles), *shape), dtype=bool)
    for i, r in enumerate(rles):
        out[i] = decode(r, shape)
    return out
