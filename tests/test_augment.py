"""Augmentations: masks stay binary and aligned, seeding, probabilities, identity."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

from phalanx.augment import phalanx_augmentation
from saltseg.data import augment

NAMES = ["bes", "phalanx"]


def blob_masks(n: int, seed: int, size: int = 101) -> np.ndarray:
    """(n, size, size) bool: smooth random blobs, some empty."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size), bool)
    for i in range(n):
        if i % 5 == 0:
            continue
        field = cv2.resize(rng.normal(size=(8, 8)).astype(np.float32), (size, size))
        out[i] = field > rng.uniform(-0.5, 0.8)
    return out


def encoded_images(masks: np.ndarray) -> np.ndarray:
    """Images whose pixels encode the mask: 220 on salt, 20 elsewhere."""
    return (masks.astype(np.uint8) * 200 + 20).astype(np.uint8)


def interior(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 5x5 neighbourhood in ``mask`` is uniform (away from boundaries)."""
    kernel = np.ones((5, 5), np.uint8)
    m = mask.astype(np.uint8)
    return cv2.dilate(m, kernel) == cv2.erode(m, kernel)


@pytest.mark.parametrize("name", NAMES)
def test_masks_stay_binary_and_aligned(name):
    masks = blob_masks(60, seed=1)
    images = encoded_images(masks)
    out_img, out_mask = augment.augment_batch(augment.get_augmentation(name, 3), images, masks)
    assert out_img.dtype == np.uint8 and out_mask.dtype == bool
    assert out_img.shape == images.shape and out_mask.shape == masks.shape
    changed, kept = 0, []
    for img, mask, before in zip(out_img, out_mask, masks, strict=True):
        changed += not np.array_equal(mask, before)
        keep = interior(mask) & interior(img > 110)
        kept.append(keep.mean())
        mismatch = (mask != (img > 110)) & keep
        assert mismatch.sum() <= 3, mismatch.sum()
        # and along boundaries too, nearly everywhere
        assert (mask != (img > 110)).mean() < 0.03
    assert changed > 20 and np.mean(kept) > 0.5


@pytest.mark.parametrize("name", [*NAMES, "none"])
def test_same_seed_same_batch(name):
    masks = blob_masks(12, seed=2)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, masks.shape, dtype=np.uint8)
    a = augment.augment_batch(augment.get_augmentation(name, 7), images, masks)
    b = augment.augment_batch(augment.get_augmentation(name, 7), images, masks)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # a seed passed to augment_batch restarts the stream on its own
    aug = augment.get_augmentation(name, None)
    c = augment.augment_batch(aug, images, masks, seed=7)
    d = augment.augment_batch(aug, images, masks, seed=7)
    np.testing.assert_array_equal(c[0], d[0])
    np.testing.assert_array_equal(c[1], d[1])
    if name != "none":
        e = augment.augment_batch(augment.get_augmentation(name, 8), images, masks)
        assert not np.array_equal(a[0], e[0])


def applied_counts(name: str, n: int, seed: int = 0) -> Counter:
    aug = augment.get_augmentation(name, seed)
    aug.save_applied_params = True
    img = np.full((101, 101), 100, np.uint8)
    mask = np.zeros((101, 101), np.uint8)
    counts: Counter = Counter()
    for _ in range(n):
        counts.update(t for t, _ in aug(image=img, mask=mask)["applied_transforms"])
    return counts


def test_bes_probabilities():
    n = 1500
    c = applied_counts("bes", n)
    assert abs(c["HorizontalFlip"] / n - 0.5) < 0.05
    assert abs(c["Affine"] / n - 0.7) < 0.05
    assert abs(c["ColorJitter"] / n - 0.3) < 0.05  # brightness 0.2 + contrast 0.1


def test_phalanx_probabilities():
    n = 1500
    c = applied_counts("phalanx", n)
    assert abs(c["HorizontalFlip"] / n - 0.5) < 0.05
    for geo in ("CropAndPad", "Affine", "Rotate"):
        assert abs(c[geo] / n - 0.5 / 3) < 0.04, geo
    for tone in ("RandomBrightnessContrast", "ColorJitter"):
        assert abs(c[tone] / n - 0.25) < 0.04, tone


def test_phalanx_flips_about_half_the_tiles():
    masks = np.zeros((300, 101, 101), bool)
    masks[:, 20:80, 5:35] = True  # salt on the left
    _, out = augment.augment_batch(
        augment.get_augmentation("phalanx", 4), np.full(masks.shape, 9, np.uint8), masks
    )
    cols = np.array([np.nonzero(m)[1].mean() for m in out])
    assert abs((cols > 50).mean() - 0.5) < 0.08


def test_phalanx_rotation_is_clockwise_like_the_original():
    import albumentations as A  # noqa: N812

    rotate = next(
        t for t in phalanx_augmentation(0).transforms[1].transforms if isinstance(t, A.Rotate)
    )
    img = np.zeros((101, 101), np.uint8)
    img[50, 90] = 255  # right of the centre; clockwise on screen moves it down
    out = A.Compose([rotate], seed=0)(image=img)["image"]
    row, _ = np.unravel_index(np.argmax(out), out.shape)
    assert row >= 50


def test_bes_tone_ranges():
    img = np.full((1, 101, 101), 100, np.uint8)  # flat: warps and contrast keep the mean
    aug = augment.get_augmentation("bes", 5)
    ratio = np.array([augment.augment_batch(aug, img, img > 0)[0].mean() for _ in range(400)])
    ratio /= 100.0
    assert ratio.min() >= 0.79 and ratio.max() <= 1.21  # brightness x U(0.8, 1.2)
    assert ratio.min() < 0.85 and ratio.max() > 1.15
    assert abs((ratio != 1).mean() - 0.2) < 0.06  # brightness p 0.2


def test_none_is_identity_and_inputs_checked():
    masks = blob_masks(4, seed=6)
    images = encoded_images(masks)
    out_img, out_mask = augment.augment_batch(augment.get_augmentation("none"), images, masks)
    np.testing.assert_array_equal(out_img, images)
    np.testing.assert_array_equal(out_mask, masks)
    assert out_img is not images
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment.get_augmentation("mixup")
    with pytest.raises(ValueError, match="uint8"):
        augment.augment_batch(augment.get_augmentation("bes"), images.astype(np.float32), masks)
    with pytest.raises(ValueError, match="do not match"):
        augment.augment_batch(augment.get_augmentation("bes"), images, masks[:2])


def test_rgb_tiles_supported():
    masks = blob_masks(6, seed=7)
    images = np.repeat(encoded_images(masks)[..., None], 3, axis=-1)
    out_img, out_mask = augment.augment_batch(augment.get_augmentation("bes", 1), images, masks)
    assert out_img.shape == images.shape and out_mask.shape == masks.shape
    for img, mask in zip(out_img, out_mask, strict=True):
        keep = interior(mask)
        assert ((mask != (img[..., 0] > 110)) & keep).sum() <= 3
