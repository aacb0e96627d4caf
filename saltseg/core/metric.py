"""The TGS Salt competition metric.

For one image with truth mask ``A`` and predicted mask ``B``::

    score = 1                                   if |A| = 0 and |B| = 0
    score = 0                                   if exactly one of |A|, |B| is 0
    score = mean_{t in 0.50, 0.55, ..., 0.95} [ IoU(A, B) > t ]   otherwise

where ``IoU = |A & B| / |A | B|`` (the whole mask is one object). The final score is the
mean over images.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = np.arange(0.5, 1.0, 0.05)
"""IoU thresholds 0.50, 0.55, ..., 0.95."""


def _as_stack(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W) or (H, W), got shape {arr.shape}")
    return arr.astype(bool, copy=False)


def image_scores(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-image competition scores for bool stacks ``(N, H, W)``; returns float64 ``(N,)``."""
    t = _as_stack(truth, "truth")
    p = _as_stack(pred, "pred")
    if t.shape != p.shape:
        raise ValueError(f"truth and pred shapes differ: {t.shape} vs {p.shape}")
    n = t.shape[0]
    t2, p2 = t.reshape(n, -1), p.reshape(n, -1)
    inter = np.count_nonzero(t2 & p2, axis=1)
    union = np.count_nonzero(t2 | p2, axis=1)
    # Exact integer test, free of float rounding at the thresholds:
    # inter/union > k/20  <=>  20*inter > k*union.
    ks = np.arange(10, 20)
    hits = (20 * inter[:, None]) > (ks[None, :] * union[:, None])
    scores = hits.mean(axis=1)
    t_empty = ~t2.any(axis=1)
    p_empty = ~p2.any(axis=1)
    scores = np.where(t_empty & p_empty, 1.0, scores)
    scores = np.where(t_empty ^ p_empty, 0.0, scores)
    return scores.astype(np.float64)


def score(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean competition score over images."""
    s = image_scores(truth, pred)
    return float(s.mean()) if s.size else float("nan")


def best_threshold(
    truth: np.ndarray,
    prob: np.ndarray,
    thresholds: np.ndarray | None = None,
    min_size: int = 0,
) -> tuple[float, float, np.ndarray]:
    """Pick the probability threshold that maximises the score on validation data.

    ``prob`` is ``(N, H, W)`` in [0, 1]. Predicted masks with fewer than ``min_size``
    pixels are emptied. Returns ``(best_threshold, best_score, scores_per_threshold)``;
    ties go to the threshold closest to 0.5.
    """
    if thresholds is None:
        thresholds = np.round(np.arange(0.05, 0.96, 0.01), 4)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    t = _as_stack(truth, "truth")
    p = np.asarray(prob)
    if p.ndim == 2:
        p = p[None]
    if p.shape != t.shape:
        raise ValueError(f"truth and prob shapes differ: {t.shape} vs {p.shape}")
    results = np.empty(thresholds.size)
    for i, th in enumerate(thresholds):
        masks = p > th
        if min_size > 0:
            small = masks.reshape(len(masks), -1).sum(axis=1) < min_size
            masks[small] = False
        results[i] = score(t, masks)
    best = results.max()
    candidates = np.flatnonzero(np.isclose(results, best, rtol=0, atol=1e-12))
    pick = candidates[np.argmin(np.abs(thresholds[candidates] - 0.5))]
    return float(thresholds[pick]), float(results[pick]), results
