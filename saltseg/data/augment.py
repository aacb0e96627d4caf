"""Augmentation core, on 101x101 tiles, with albumentations 2.x: seeding, the identity
pipeline, the registry lookup and the batch loop. The families' pipelines live in their
packages (``bes/augment.py``, ``phalanx/augment.py``).

Pipelines work on the raw tile (before any resize/pad), as in the originals. Images are
``uint8``; masks are kept binary (nearest-neighbour warps, or linear + threshold 0.5 where
the original did that). Randomness comes from ONE seeded stream per pipeline, so the same
seed gives the same augmented batch.

"""

from __future__ import annotations

import random
from collections.abc import Callable

import albumentations as A  # noqa: N812 (the library's own convention)
import cv2
import numpy as np

REFLECT_101 = cv2.BORDER_REFLECT_101


def reseed(aug: A.Compose, seed: int | None) -> A.Compose:
    """Give the whole pipeline one shared random stream seeded with ``seed``; return it.

    ``A.Compose(seed=...)`` seeds every child with the SAME seed (separate generators that
    start in step); a single shared stream keeps the transforms' draws independent.
    """
    aug.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return aug


def jitter(
    brightness: tuple[float, float] = (1.0, 1.0),
    contrast: tuple[float, float] = (1.0, 1.0),
    p: float = 1.0,
) -> A.ColorJitter:
    """``img * b`` (brightness) or ``c * img + (1 - c) * mean(img)`` (contrast), clipped.

    Ranges are given as tuples: a single number ``x`` would mean ``(1 - x, 1 + x)``.
    """
    return A.ColorJitter(
        brightness=brightness, contrast=contrast, saturation=(1.0, 1.0), hue=(0.0, 0.0), p=p
    )


def no_augmentation(seed: int | None = None) -> A.Compose:
    """The identity pipeline."""
    return reseed(A.Compose([]), seed)


def get_augmentation(name: str, seed: int | None = None) -> A.Compose:
    """The pipeline called ``name`` in a recipe (a registered factory: ``none`` here, the
    families' own, e.g. ``bes`` and ``phalanx``), seeded with ``seed``."""
    from saltseg.core.registry import REGISTRY

    factory: Callable[[int | None], A.Compose] = REGISTRY.get("augmentations", name)
    return factory(seed)


def augment_batch(
    aug: A.Compose,
    images: np.ndarray,
    masks: np.ndarray,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Augment each ``(image, mask)`` pair of a batch together.

    ``images``: ``uint8`` ``(N, H, W)`` (or ``(N, H, W, C)``); ``masks``: ``(N, H, W)`` boolean
    (or 0/1). Returns new arrays of the same shapes, ``uint8`` images and ``bool`` masks (a
    mask pixel is set where the warped 0/255 mask is > 127). ``seed``, if given, restarts the
    pipeline's random stream first, so a batch can be reproduced on its own.
    """
    images = np.asarray(images)
    masks = np.asarray(masks)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    if masks.shape[:3] != images.shape[:3] or masks.ndim != 3:
        raise ValueError(f"masks {masks.shape} do not match images {images.shape}")
    if seed is not None:
        reseed(aug, seed)
    out_images = np.empty_like(images)
    out_masks = np.empty(masks.shape, dtype=bool)
    if not aug.transforms:
        out_images[...] = images
        out_masks[...] = masks.astype(bool)
        return out_images, out_masks
    mask_u8 = masks.astype(bool).astype(np.uint8) * 255
    for i in range(len(images)):
        res = aug(image=images[i], mask=mask_u8[i])
        out_images[i] = res["image"].reshape(images.shape[1:])
        out_masks[i] = res["mask"].reshape(masks.shape[1:]) > 127
    return out_images, out_masks
