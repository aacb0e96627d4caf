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
from dataclasses import dataclass
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


@dataclass
class Section:
    """A section cut into windows: the windows' corners and pixels, ready to stitch back.

    ``scale`` (traces, samples) resamples the section before it is cut; :meth:`stitch`
    resamples the probabilities back to the section's size.
    """

    shape: tuple[int, int]
    padded: tuple[int, int]
    scaled: tuple[int, int]
    corners: list[tuple[int, int]]
    tiles: np.ndarray

    @classmethod
    def cut(
        cls, grey: np.ndarray, stride: int = TILE // 2, scale: tuple[float, float] = (1.0, 1.0)
    ) -> Section:
        sx, sy = scale
        if sx <= 0 or sy <= 0:
            raise ValueError(f"scale factors must be positive, got {scale}")
        rows, cols = grey.shape
        scaled = (max(1, round(rows * sy)), max(1, round(cols * sx)))
        work = resample(grey, scaled)
        pad_r, pad_c = max(0, TILE - scaled[0]), max(0, TILE - scaled[1])
        if pad_r or pad_c:
            work = np.pad(work, ((0, pad_r), (0, pad_c)), mode="edge")
        H, W = work.shape
        corners = [(r, c) for r in origins(H, stride) for c in origins(W, stride)]
        tiles = np.stack([work[r : r + TILE, c : c + TILE] for r, c in corners])
        return cls((rows, cols), (H, W), scaled, corners, tiles)

    def stitch(self, probs: np.ndarray) -> np.ndarray:
        """The weighted mean of the windows' probabilities ``(len(corners), 101, 101)``, at
        the section's size."""
        weight = blend_window()
        acc = np.zeros(self.padded, dtype=np.float32)
        norm = np.zeros(self.padded, dtype=np.float32)
        for (r, c), p in zip(self.corners, probs, strict=True):
            acc[r : r + TILE, c : c + TILE] += weight * p
            norm[r : r + TILE, c : c + TILE] += weight
        prob = (acc / norm)[: self.scaled[0], : self.scaled[1]]
        if self.scaled != self.shape:
            prob = np.clip(resample(prob, self.shape), 0.0, 1.0)
        return prob


def run_tiles(predictor: TilePredictor, tiles: np.ndarray, batch: int = 256) -> np.ndarray:
    """The predictor over ``tiles`` in calls of at most ``batch``, float32."""
    out = np.empty(tiles.shape, dtype=np.float32)
    for lo in range(0, len(tiles), batch):
        out[lo : lo + batch] = predictor(tiles[lo : lo + batch])
    return out


def resample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``shape`` (rows, cols): area averaging down, linear up."""
    if image.shape == shape:
        return image
    shrink = shape[0] * shape[1] < image.shape[0] * image.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (shape[1], shape[0]), interpolation=interp)


def predict_section(
    grey: np.ndarray,
    predictor: TilePredictor,
    stride: int = TILE // 2,
    batch: int = 256,
    scale: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Stitched probabilities ``(rows, cols)`` float32 of a uint8 section ``(rows, cols)``."""
    section = Section.cut(grey, stride, scale)
    return section.stitch(run_tiles(predictor, section.tiles, batch))


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
