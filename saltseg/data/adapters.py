"""Input adapters: 101x101 tiles <-> the network input size of each family.

The families register theirs (:mod:`saltseg.core.registry`):

- ``bes-224``: 101 -> resize 192 (bilinear) -> reflect-101 pad to 224; the gray image
  repeated to 3 channels, float32 0-255. Predictions: centre crop 192 -> resize 101.
- ``phalanx-256``: 101 -> resize 202 -> edge pad (27, 27) to 256; channels
  ``[image/255, row ramp 0..1 over 256 rows, image/255 * ramp]``. Predictions: crop 202 ->
  resize 101.
- ``phalanx-128``: 101 -> edge pad (13, 14) to 128, same channels. Predictions: crop 101
  (an exact inverse).

Masks are resized as float and re-binarised (``> 0.5``) before padding with the image's
border mode (the original b.e.s. code forgot to re-binarise). OpenCV bilinear
(``INTER_LINEAR``) is used throughout, as in both original pipelines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from saltseg import TILE
from saltseg.core.registry import REGISTRY

_CV_MAX_CHANNELS = 128  # OpenCV 5 resizes at most 128 channels at once (4.x: 512)


def _resize_stack(stack: np.ndarray, size: int) -> np.ndarray:
    """Bilinear-resize a float32 ``(N, H, W)`` stack to ``(N, size, size)`` with OpenCV."""
    n = stack.shape[0]
    out = np.empty((n, size, size), dtype=np.float32)
    for lo in range(0, n, _CV_MAX_CHANNELS):
        chunk = np.ascontiguousarray(stack[lo : lo + _CV_MAX_CHANNELS].transpose(1, 2, 0))
        resized = cv2.resize(chunk, (size, size), interpolation=cv2.INTER_LINEAR)
        out[lo : lo + _CV_MAX_CHANNELS] = resized.reshape(size, size, -1).transpose(2, 0, 1)
    return out


def _check_tiles(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1:] != (TILE, TILE):
        raise ValueError(f"{what} must have shape (N, {TILE}, {TILE}), got {x.shape}")
    return x


@dataclass(frozen=True)
class Adapter:
    """Maps ``(N, 101, 101)`` tiles to ``(N, size, size, C)`` network inputs and back.

    ``resize``: side after resizing (``None``: no resize); the resized tile is padded with
    ``pad_before``/``pad_after`` pixels per side using ``border`` (NumPy pad mode:
    ``"reflect"`` is OpenCV's reflect-101, ``"edge"`` replicates). ``channels``: ``"gray3"``
    (0-255 image repeated 3 times) or ``"ramp"`` (image 0-1, row ramp, image * ramp).
    """

    name: str
    size: int
    resize: int | None
    pad_before: int
    pad_after: int
    border: str
    channels: str

    def __post_init__(self) -> None:
        inner = TILE if self.resize is None else self.resize
        if inner + self.pad_before + self.pad_after != self.size:
            raise ValueError(f"{self.name}: {inner} + padding != {self.size}")

    @property
    def n_channels(self) -> int:
        """Number of input channels of the network."""
        return 3

    @property
    def inner(self) -> int:
        """Side of the (resized) tile inside the padded input."""
        return TILE if self.resize is None else self.resize

    def _geometry(self, stack: np.ndarray) -> np.ndarray:
        """Resize (if any) and pad a float32 ``(N, 101, 101)`` stack."""
        if self.resize is not None:
            stack = _resize_stack(stack, self.resize)
        pad = (self.pad_before, self.pad_after)
        return np.pad(stack, ((0, 0), pad, pad), mode=self.border)

    def forward_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(N, 101, 101)`` -> float32 ``(N, size, size, 3)`` network input."""
        images = _check_tiles(images, "images")
        gray = images.astype(np.float32)
        if self.channels == "gray3":
            padded = self._geometry(gray)
            return np.repeat(padded[..., None], 3, axis=-1)
        padded = self._geometry(gray / 255.0)
        ramp = np.linspace(0.0, 1.0, self.size, dtype=np.float32)[None, :, None]
        ramp = np.broadcast_to(ramp, padded.shape)
        return np.stack([padded, ramp, padded * ramp], axis=-1).astype(np.float32)

    def forward_masks(self, masks: np.ndarray) -> np.ndarray:
        """bool ``(N, 101, 101)`` -> float32 0/1 ``(N, size, size, 1)`` (re-binarised)."""
        masks = _check_tiles(masks, "masks").astype(bool).astype(np.float32)
        if self.resize is not None:
            masks = (_resize_stack(masks, self.resize) > 0.5).astype(np.float32)
        pad = (self.pad_before, self.pad_after)
        padded = np.pad(masks, ((0, 0), pad, pad), mode=self.border)
        return padded[..., None]

    def inverse(self, prob: np.ndarray) -> np.ndarray:
        """``(N, size, size[, 1])`` predictions -> float32 ``(N, 101, 101)``: crop, resize."""
        prob = np.asarray(prob, dtype=np.float32)
        if prob.ndim == 4 and prob.shape[-1] == 1:
            prob = prob[..., 0]
        if prob.ndim != 3 or prob.shape[1:] != (self.size, self.size):
            raise ValueError(
                f"{self.name}: predictions must be (N, {self.size}, {self.size}[, 1]), "
                f"got {prob.shape}"
            )
        lo, hi = self.pad_before, self.pad_before + self.inner
        crop = prob[:, lo:hi, lo:hi]
        if self.resize is not None:
            crop = _resize_stack(crop, TILE)
        return np.ascontiguousarray(crop, dtype=np.float32)


class _Adapters(Mapping[str, Adapter]):
    """The registered adapters by name (the families register theirs)."""

    def __getitem__(self, name: str) -> Adapter:
        return REGISTRY.get("adapters", name)

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY.names("adapters"))

    def __len__(self) -> int:
        return len(REGISTRY.names("adapters"))


ADAPTERS: Mapping[str, Adapter] = _Adapters()


def get_adapter(name: str) -> Adapter:
    """The adapter registered under ``name`` (``bes-224``, ``phalanx-256``, ``phalanx-128``)."""
    return REGISTRY.get("adapters", name)
