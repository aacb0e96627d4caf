"""Sections of any size through a 101x101 tile model: overlapping windows, blended back.

A section (rows = samples, columns = traces, uint8 grey) is cut into 101x101 windows at a
stride (default half a tile); the last window of each axis is moved back to end at the edge,
so every pixel is covered, and a section smaller than a tile is edge-padded to one. Each
window's probabilities are weighted by a smooth window (a raised cosine that is largest at
the centre and small but positive at the border) and the weighted sum is divided by the sum
of weights, so the result is a weighted mean of every window's opinion at each pixel: a model
that maps each pixel to a fixed function of its value is stitched back exactly.

The model is any :class:`TilePredictor` (uint8 tiles in, probabilities out), so a stand-in
can replace the network; :class:`StageTiles` adapts trained stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from saltseg import TILE

if TYPE_CHECKING:
    from saltseg.infer.stage import StagePredictor


class TilePredictor(Protocol):
    """Probabilities ``(N, 101, 101)`` float32 in [0, 1] for uint8 tiles ``(N, 101, 101)``."""

    def __call__(self, tiles: np.ndarray) -> np.ndarray: ...


def origins(length: int, stride: int, tile: int = TILE) -> list[int]:
    """Window starts covering ``0..length`` (``length >= tile``), the last ending at the edge."""
    if stride < 1 or stride > tile:
        raise ValueError(f"stride must be between 1 and {tile}, got {stride}")
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def blend_window(tile: int = TILE) -> np.ndarray:
    """The 2D weight of a window's pixels: a separable raised cosine, positive everywhere."""
    w = np.sin(np.pi * (np.arange(tile) + 0.5) / tile) ** 2
    return np.outer(w, w).astype(np.float32)


def predict_section(
    grey: np.ndarray,
    predictor: TilePredictor,
    stride: int = TILE // 2,
    batch: int = 256,
) -> np.ndarray:
    """Stitched probabilities ``(rows, cols)`` float32 of a uint8 section ``(rows, cols)``."""
    rows, cols = grey.shape
    pad_r, pad_c = max(0, TILE - rows), max(0, TILE - cols)
    if pad_r or pad_c:
        grey = np.pad(grey, ((0, pad_r), (0, pad_c)), mode="edge")
    H, W = grey.shape
    corners = [(r, c) for r in origins(H, stride) for c in origins(W, stride)]
    weight = blend_window()
    acc = np.zeros((H, W), dtype=np.float32)
    norm = np.zeros((H, W), dtype=np.float32)
    for lo in range(0, len(corners), batch):
        part = corners[lo : lo + batch]
        tiles = np.stack([grey[r : r + TILE, c : c + TILE] for r, c in part])
        probs = np.asarray(predictor(tiles), dtype=np.float32)
        for (r, c), p in zip(part, probs, strict=True):
            acc[r : r + TILE, c : c + TILE] += weight * p
            norm[r : r + TILE, c : c + TILE] += weight
    return (acc / norm)[:rows, :cols]


def resample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``shape`` (rows, cols): area averaging down, linear up."""
    if image.shape == shape:
        return image
    shrink = shape[0] * shape[1] < image.shape[0] * image.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (shape[1], shape[0]), interpolation=interp)


def predict_scaled(
    grey: np.ndarray,
    predictor: TilePredictor,
    scale: tuple[float, float] = (1.0, 1.0),
    stride: int = TILE // 2,
    batch: int = 256,
) -> np.ndarray:
    """:func:`predict_section` on the section resampled by ``scale`` (traces, samples), with
    the probabilities resampled back to the section's size."""
    sx, sy = scale
    if sx <= 0 or sy <= 0:
        raise ValueError(f"scale factors must be positive, got {scale}")
    rows, cols = grey.shape
    shape = (max(1, round(rows * sy)), max(1, round(cols * sx)))
    prob = predict_section(resample(grey, shape), predictor, stride, batch)
    return np.clip(resample(prob, (rows, cols)), 0.0, 1.0)


class StageTiles:
    """A :class:`TilePredictor` from trained stages: the mean of each stage's prediction
    (``saltseg.infer.stage.StagePredictor``: its folds, weights and flip TTA)."""

    def __init__(
        self, stages: Sequence[tuple[StagePredictor, list[int]]], flip_tta: bool = True
    ) -> None:
        self.stages = list(stages)
        self.flip_tta = flip_tta

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        acc = np.zeros(tiles.shape, dtype=np.float32)
        for predictor, folds in self.stages:
            acc += predictor.predict(tiles, folds, self.flip_tta)
        return acc / np.float32(len(self.stages))
