"""Training augmentations of both families, on 101x101 tiles, with albumentations 2.x.

Both pipelines work on the raw tile (before any resize/pad), as in the originals. Images are
``uint8``; masks are kept binary (nearest-neighbour warps, or linear + threshold 0.5 where
the original did that). Randomness comes from ONE seeded stream per pipeline, so the same
seed gives the same augmented batch.

Sources read (ybabakhin/kaggle_salt_bes_phalanx): ``bes/augmentations.py``,
``bes/datasets/generators.py``, ``docker/Dockerfile`` (albumentations 0.1.2),
``phalanx/salt_dataset.py`` (``train_aug``) and ``phalanx/transform.py``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import albumentations as A  # noqa: N812 (the library's own convention)
import cv2
import numpy as np

from saltseg import TILE

REFLECT_101 = cv2.BORDER_REFLECT_101


def reseed(aug: A.Compose, seed: int | None) -> A.Compose:
    """Give the whole pipeline one shared random stream seeded with ``seed``; return it.

    ``A.Compose(seed=...)`` seeds every child with the SAME seed (separate generators that
    start in step); a single shared stream keeps the transforms' draws independent.
    """
    aug.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return aug


def _jitter(
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


def bes_augmentation(seed: int | None = None) -> A.Compose:
    """b.e.s. training augmentation (``bes/augmentations.py``, albumentations 0.1.2).

    Original -> here:

    * ``HorizontalFlip(p=0.5)`` -> the same.
    * ``RandomBrightness(limit=0.2, p=0.2)``: 0.1.2 multiplied the image by ``1 + U(-0.2,
      0.2)`` -> ``ColorJitter(brightness=(0.8, 1.2))``, p 0.2.
    * ``RandomContrast(limit=0.2, p=0.1)``: ``a * img + 3 (1 - a) mean(gray)``, ``a = 1 +
      U(-0.2, 0.2)`` -> the usual contrast about the mean, ``a * img + (1 - a) mean``
      (``ColorJitter(contrast=(0.8, 1.2))``), p 0.1. The 0.1.2 form also shifted the mean.
    * ``ShiftScaleRotate(shift_limit=0.1625, scale_limit=0.6, rotate_limit=0, p=0.7)``: 0.1.2
      drew ``scale ~ U(0.4, 1.6)`` (one factor for both axes), ``dx, dy ~ U(-0.1625, 0.1625)``
      of the side, no rotation, linear interpolation, ``BORDER_REFLECT_101``, nearest
      neighbour for the mask -> ``Affine(scale=(0.4, 1.6), keep_ratio=True,
      translate_percent=+-0.1625, rotate=0)`` with the same interpolation and border, p 0.7.

    Not reproduced: the original fed float32 images in 0..255 to 0.1.2, whose brightness
    and contrast clip float32 results to [0, 1], so those 28% of tiles became nearly
    constant images; masks were later resized bilinearly without re-binarising.
    """
    pipeline = A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            _jitter(brightness=(0.8, 1.2), p=0.2),
            _jitter(contrast=(0.8, 1.2), p=0.1),
            A.Affine(
                scale=(0.4, 1.6),
                keep_ratio=True,
                translate_percent={"x": (-0.1625, 0.1625), "y": (-0.1625, 0.1625)},
                rotate=0.0,
                shear=0.0,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=REFLECT_101,
                p=0.7,
            ),
        ]
    )
    return reseed(pipeline, seed)


# phalanx ``do_horizontal_shear2(dx=U(-0.07, 0.07))`` moves the top edge by ``int(dx * W)``
# pixels and the bottom edge by the opposite: a shear of ``2 dx`` about the centre row.
PHALANX_SHEAR_DEG = math.degrees(math.atan(2 * 0.07))
# ``do_random_shift_scale_crop_pad2(limit=0.2)`` crops ``randint(0, int(0.2 * 101))`` =
# 0..19 pixels from each side independently, then resizes back.
PHALANX_MAX_CROP = int(0.2 * TILE) - 1


def phalanx_augmentation(seed: int | None = None) -> A.Compose:
    """phalanx training augmentation at 101x101 (``train_aug`` in ``phalanx/salt_dataset.py``).

    Original -> here (all warps ``BORDER_REFLECT_101``, linear for the image):

    * h-flip p 0.5 -> ``HorizontalFlip(p=0.5)``.
    * p 0.5, one of three equally likely:
      - crop 0..19 px from each side independently, resize back (mask: linear, > 0.5) ->
        ``CropAndPad`` with ``px`` in -19..0 per side and ``keep_size=True``, a
        linear mask resize (thresholded at 0.5 by :func:`augment_batch`);
      - horizontal shear, top edge ``+int(dx W)`` px, bottom edge ``-int(dx W)``, ``dx ~
        U(-0.07, 0.07)`` -> ``Affine(shear x ~ U(-7.97, 7.97) deg)`` about the centre
        (continuous instead of whole-pixel steps), nearest mask;
      - rotation by ``U(0, 15)`` degrees, clockwise on screen -> ``Rotate(limit=(-15, 0))``
        (albumentations' positive angles turn anticlockwise), nearest mask.
    * p 0.5, one of two: brightness shift ``+U(-0.1, 0.1)`` of full scale ->
      ``RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0)``; brightness scale
      ``x U(0.92, 1.08)`` -> ``ColorJitter(brightness=(0.92, 1.08))``. Both clip to the range.
    """
    pipeline = A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.OneOf(
                [
                    A.CropAndPad(
                        px=(-PHALANX_MAX_CROP, 1),  # randrange: -19..0 px per side
                        keep_size=True,
                        sample_independently=True,
                        interpolation=cv2.INTER_LINEAR,
                        mask_interpolation=cv2.INTER_LINEAR,
                        p=1.0,
                    ),
                    A.Affine(
                        shear={"x": (-PHALANX_SHEAR_DEG, PHALANX_SHEAR_DEG), "y": (0.0, 0.0)},
                        interpolation=cv2.INTER_LINEAR,
                        mask_interpolation=cv2.INTER_NEAREST,
                        border_mode=REFLECT_101,
                        p=1.0,
                    ),
                    A.Rotate(
                        limit=(-15.0, 0.0),
                        interpolation=cv2.INTER_LINEAR,
                        mask_interpolation=cv2.INTER_NEAREST,
                        border_mode=REFLECT_101,
                        p=1.0,
                    ),
                ],
                p=0.5,
            ),
            A.OneOf(
                [
                    A.RandomBrightnessContrast(
                        brightness_limit=(-0.1, 0.1),
                        contrast_limit=(0.0, 0.0),
                        brightness_by_max=True,
                        p=1.0,
                    ),
                    _jitter(brightness=(0.92, 1.08), p=1.0),
                ],
                p=0.5,
            ),
        ]
    )
    return reseed(pipeline, seed)


def no_augmentation(seed: int | None = None) -> A.Compose:
    """The identity pipeline."""
    return reseed(A.Compose([]), seed)


AUGMENTATIONS: dict[str, Callable[[int | None], A.Compose]] = {
    "bes": bes_augmentation,
    "phalanx": phalanx_augmentation,
    "none": no_augmentation,
}


def get_augmentation(name: str, seed: int | None = None) -> A.Compose:
    """The pipeline called ``name`` in a recipe (``bes``, ``phalanx`` or ``none``)."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name](seed)


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
