"""``saltseg review`` on a small TGS folder: CSV and probability inputs, tables, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import write_tgs_dir

from saltseg.cli.main import main
from saltseg.core import metric
from saltseg.data.probs import write_probs
from saltseg.data.submission import read_rle_csv, write_rle_csv
from saltseg.report.review import review_csv, worst_and_best


@pytest.fixture(scope="module")
def tgs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], np.ndarray]:
    root = tmp_path_factory.mktemp("review") / "tgs"
    write_tgs_dir(root, n_train=30, n_test=2, seed=5)
    ids, masks = read_rle_csv(root / "train.csv")
    order = np.argsort(ids)
    return root, [ids[i] for i in order], masks[order]


def _pred_masks(truth: np.ndarray) -> np.ndarray:
    """A prediction with every kind of error: perfect, shifted, emptied, invented."""
    pred = truth.copy()
    pred[1::4] = np.roll(truth[1::4], 6, axis=2)
    pred[2::4] = False
    pred[3::4, 40:60, 40:60] = True
    return pred


def _class(pixels: np.ndarray) -> np.ndarray:
    cov = pixels / 10201.0
    return np.array([0 if c == 0 else min(10, 1 + int(c * 10)) for c in cov])


def test_review_csv_numbers(tgs, tmp_path: Path) -> None:
    root, ids, truth = tgs
    keep = ids[::2]  # a subset of the truth ids
    pred = _pred_masks(truth)[::2]
    write_rle_csv(tmp_path / "pred.csv", keep, pred)
    out = tmp_path / "out"
    argv = ["review", str(tmp_path / "pred.csv"), "--truth", str(root / "train.csv")]
    assert main([*argv, "--data", str(root), "--out", str(out), "--n", "4"]) == 0
    for name in ("review_overlays.png", "review_coverage.png"):
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape[0] >= 200 and img.shape[1] >= 400
    assert not (out / "review_threshold.png").exists()
    md = (out / "review.md").read_text()
    scores = metric.image_scores(truth[::2], pred)
    assert f"- tiles reviewed: {len(keep)} (of {len(ids)} truth ids)" in md
    assert f"- score: {scores.mean():.4f}" in md
    cls = _class(truth[::2].reshape(len(keep), -1).sum(axis=1))
    labels = ["empty", *(f"{k}-{k + 10}%" for k in range(0, 100, 10))]
    pred_empty = ~pred.reshape(len(keep), -1).any(axis=1)
    for c in np.unique(cls):
        sel = cls == c
        lost = (1 - scores[sel]).sum() / len(keep)
        row = (
            f"| {labels[c]} | {sel.sum()} | {scores[sel].mean():.4f} | "
            f"{pred_empty[sel].sum()} | {lost:.4f} |"
        )
        assert row in md
    csv = pd.read_csv(out / "scores.csv", dtype={"id": str})
    assert csv["id"].tolist() == keep
    np.testing.assert_allclose(csv["score"], scores, atol=1e-4)


def test_review_probs_threshold(tgs, tmp_path: Path) -> None:
    root, ids, truth = tgs
    rng = np.random.default_rng(0)
    prob = np.clip(truth * 0.7 + rng.uniform(0, 0.45, truth.shape), 0, 1)
    write_probs(tmp_path / "oof.h5", ids, prob, {"set": "oof"})
    out = tmp_path / "out"
    argv = ["review", "--probs", str(tmp_path / "oof.h5"), "--truth", str(root / "train.csv")]
    assert main([*argv, "--data", str(root), "--out", str(out)]) == 0
    assert cv2.imread(str(out / "review_threshold.png")) is not None
    q = np.rint(prob * 255) / 255  # what the file holds
    best, best_score, _ = metric.best_threshold(truth, q.astype(np.float32))
    md = (out / "review.md").read_text()
    assert f"- threshold: {best:.2f}" in md
    assert f"- score: {best_score:.4f}" in md
    at_half = metric.score(truth, q.astype(np.float32) > 0.5)
    assert f"- score at threshold 0.50: {at_half:.4f}" in md


def test_review_rejects_ids_without_truth(tgs, tmp_path: Path, capsys) -> None:
    root, ids, truth = tgs
    write_rle_csv(tmp_path / "pred.csv", [*ids[:3], "zz_unknown"], truth[:4])
    argv = ["review", str(tmp_path / "pred.csv"), "--truth", str(root / "train.csv")]
    assert main([*argv, "--data", str(root), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "zz_unknown" in err and "subset" in err


def test_review_needs_one_input(tgs, tmp_path: Path, capsys) -> None:
    root, _, _ = tgs
    assert main(["review", "--truth", str(root / "train.csv"), "--data", str(root)]) == 2
    assert "exactly one" in capsys.readouterr().err


def test_worst_and_best_without_images(tgs, tmp_path: Path) -> None:
    root, ids, truth = tgs
    pred = _pred_masks(truth)
    write_rle_csv(tmp_path / "pred.csv", ids, pred)
    review = review_csv(tmp_path / "pred.csv", root / "train.csv")
    worst, best = worst_and_best(review, 3)
    np.testing.assert_array_equal(review.scores[worst], np.sort(review.scores)[:3])
    assert np.all(review.scores[worst][:, None] <= review.scores[best][None, :])
    assert np.all(review.truth_pixels[best] > 0)
    out = tmp_path / "o"
    argv = ["review", str(tmp_path / "pred.csv"), "--truth", str(root / "train.csv")]
    assert main([*argv, "--data", str(tmp_path / "nowhere"), "--out", str(out)]) == 0
    assert "drawn on grey" in (out / "review.md").read_text()
