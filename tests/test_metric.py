"""The metric against an independent, loop-based implementation in exact arithmetic."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from saltseg.core import metric
from saltseg.data.tiles import TGSDirectory


def reference_image_score(truth: np.ndarray, pred: np.ndarray) -> float:
    """Direct transcription of the definition, with exact rational IoU."""
    t_sum, p_sum = int(truth.sum()), int(pred.sum())
    if t_sum == 0 and p_sum == 0:
        return 1.0
    if t_sum == 0 or p_sum == 0:
        return 0.0
    inter = int(np.logical_and(truth, pred).sum())
    union = int(np.logical_or(truth, pred).sum())
    iou = Fraction(inter, union)
    thresholds = [Fraction(50 + 5 * k, 100) for k in range(10)]
    return sum(1 for t in thresholds if iou > t) / len(thresholds)


def reference_score(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([reference_image_score(t, p) for t, p in zip(truth, pred, strict=True)]))


def test_thresholds() -> None:
    np.testing.assert_allclose(metric.THRESHOLDS, [0.5 + 0.05 * k for k in range(10)])


def test_empty_cases() -> None:
    z = np.zeros((1, 101, 101), bool)
    o = z.copy()
    o[0, 10:20, 10:20] = True
    assert metric.score(z, z) == 1.0
    assert metric.score(z, o) == 0.0
    assert metric.score(o, z) == 0.0
    assert metric.score(o, o) == 1.0


def test_exact_threshold_ties() -> None:
    # IoU exactly 0.55 counts for t = 0.50 only ("> t", not ">= t").
    truth = np.zeros((1, 20, 20), bool)
    truth[0, :, :] = True  # 400 px
    pred = np.zeros_like(truth)
    pred[0].flat[:220] = True  # IoU = 220/400 = 0.55
    assert metric.image_scores(truth, pred)[0] == pytest.approx(0.1)
    assert reference_image_score(truth[0], pred[0]) == pytest.approx(0.1)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="differ"):
        metric.image_scores(np.zeros((2, 5, 5), bool), np.zeros((3, 5, 5), bool))


@settings(max_examples=150, deadline=None)
@given(
    arrays(bool, st.tuples(st.integers(1, 6), st.just(12), st.just(12))),
    st.data(),
)
def test_matches_reference_on_random_masks(truth: np.ndarray, data) -> None:
    pred = data.draw(arrays(bool, truth.shape))
    # Also include near-copies so high IoUs occur.
    flips = data.draw(arrays(bool, truth.shape, elements=st.sampled_from([False] * 9 + [True])))
    for p in (pred, truth ^ flips):
        assert abs(metric.score(truth, p) - reference_score(truth, p)) < 1e-9
        np.testing.assert_allclose(
            metric.image_scores(truth, p),
            [reference_image_score(t, q) for t, q in zip(truth, p, strict=True)],
            atol=1e-12,
        )


def test_best_threshold_recovers_the_right_cut() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random((20, 30, 30)) > 0.6
    truth[:5] = False
    prob = np.where(truth, 0.7, 0.3) + rng.normal(0, 0.02, truth.shape)
    th, best, curve = metric.best_threshold(truth, prob)
    assert 0.35 < th < 0.65
    assert best == pytest.approx(1.0)
    assert curve.shape == (91,)


def _perturb(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty_like(masks)
    kernel = np.ones((3, 3), np.uint8)
    for i, m in enumerate(masks.astype(np.uint8)):
        op = rng.integers(0, 4)
        if op == 0:
            m = cv2.dilate(m, kernel, iterations=int(rng.integers(1, 6)))
        elif op == 1:
            m = cv2.erode(m, kernel, iterations=int(rng.integers(1, 6)))
        elif op == 2:
            m = np.roll(m, int(rng.integers(-8, 9)), axis=int(rng.integers(0, 2)))
        else:
            m = m if rng.random() < 0.5 else np.zeros_like(m)
        out[i] = m.astype(bool)
    return out


@pytest.mark.realdata
@pytest.mark.slow
def test_matches_reference_on_real_masks(tgs_data) -> None:
    train = TGSDirectory(tgs_data).load_train(verify_rle=False)
    rng = np.random.default_rng(0)
    pred = _perturb(train.masks, rng)
    ours = metric.image_scores(train.masks, pred)
    ref = np.array([reference_image_score(t, p) for t, p in zip(train.masks, pred, strict=True)])
    assert np.max(np.abs(ours - ref)) < 1e-9
    assert abs(metric.score(train.masks, pred) - ref.mean()) < 1e-9
    assert 0.3 < ref.mean() < 0.95  # the perturbation is neither trivial nor total
