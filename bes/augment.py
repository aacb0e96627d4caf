"""b.e.s. training augmentation (albumentations 2.x), from the original's
``bes/augmentations.py`` and ``bes/datasets/generators.py`` (albumentations 0.1.2)."""

from __future__ import annotations

import albumentations as A  # noqa: N812 (the library's own convention)
import cv2

from saltseg.data.augment import REFLECT_101, jitter, reseed


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
            jitter(brightness=(0.8, 1.2), p=0.2),
            jitter(contrast=(0.8, 1.2), p=0.1),
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
