"""phalanx training augmentation (albumentations 2.x), from the original's
``phalanx/salt_dataset.py`` (``train_aug``) and ``phalanx/transform.py``."""

from __future__ import annotations

import math

import albumentations as A  # noqa: N812 (the library's own convention)
import cv2

from saltseg import TILE
from saltseg.data.augment import REFLECT_101, jitter, reseed

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
                    jitter(brightness=(0.92, 1.08), p=1.0),
                ],
                p=0.5,
            ),
        ]
    )
    return reseed(pipeline, seed)
