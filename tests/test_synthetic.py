"""Tests of the synthetic TGS-format data generator and the preview plot."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from saltseg import TILE
from saltseg.core.rle import decode
from saltseg.data.synthetic import generate_dataset, make_tile
from saltseg.report.plots import save_preview

N_TRAIN, N_TEST, SEED = 60, 20, 7


def _read_csv(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [tuple(line.split(",", 1)) for line in lines[1:]]  # type: ignore[misc]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("syn") / "tgs"
    summary = generate_dataset(out, N_TRAIN, N_TEST, seed=SEED, workers=1)
    return out, summary


@pytest.fixture(scope="module")
def tiles() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(2024)
    return [make_tile(rng) for _ in range(400)]


def test_summary(dataset: tuple[Path, dict]) -> None:
    _, summary = dataset
    assert summary["n_train"] == N_TRAIN and summary["n_test"] == N_TEST
    assert summary["n_black"] >= 2
    assert 0.0 < summary["empty_fraction"] < 1.0
    assert 0.0 < summary["mean_coverage"] < 1.0


def test_files_and_formats(dataset: tuple[Path, dict]) -> None:
    out, _ = dataset
    train = _read_csv(out / "train.csv")
    test_ids = [i for i, _ in _read_csv(out / "sample_submission.csv")]
    assert len(train) == N_TRAIN and len(test_ids) == N_TEST
    for tid, _ in train:
        img = cv2.imread(str(out / "train/images" / f"{tid}.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (TILE, TILE, 3) and img.dtype == np.uint8
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 0] == img[..., 2]).all()
        mask = cv2.imread(str(out / "train/masks" / f"{tid}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (TILE, TILE) and mask.dtype == np.uint16
        assert set(np.unique(mask)) <= {0, 65535}
    for tid in test_ids:
        img = cv2.imread(str(out / "test/images" / f"{tid}.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (TILE, TILE, 3) and img.dtype == np.uint8
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 0] == img[..., 2]).all()
    assert len(list((out / "train/images").iterdir())) == N_TRAIN
    assert len(list((out / "test/images").iterdir())) == N_TEST
    assert not list(out.rglob(".*")), "temporary files left behind"


def test_rle_matches_mask_png(dataset: tuple[Path, dict]) -> None:
    out, _ = dataset
    rows = _read_csv(out / "train.csv")
    for tid, rle in rows:
        mask = cv2.imread(str(out / "train/masks" / f"{tid}.png"), cv2.IMREAD_UNCHANGED) > 0
        assert np.array_equal(decode(rle), mask)
    ids = [i for i, _ in rows]
    assert ids != sorted(ids), "train.csv rows should be in random order"
    assert any(r == "" for _, r in rows) and any(r for _, r in rows)


def test_ids_depths_submission(dataset: tuple[Path, dict]) -> None:
    out, _ = dataset
    train_ids = [i for i, _ in _read_csv(out / "train.csv")]
    sub = _read_csv(out / "sample_submission.csv")
    test_ids = [i for i, _ in sub]
    all_ids = train_ids + test_ids
    assert len(set(all_ids)) == len(all_ids)
    assert all(re.fullmatch(r"[0-9a-f]{10}", i) for i in all_ids)
    assert {i for i, _ in sub} == {p.stem for p in (out / "test/images").iterdir()}
    assert all(r == "1 1" for _, r in sub)
    depths = _read_csv(out / "depths.csv")
    assert sorted(i for i, _ in depths) == sorted(all_ids)
    z = np.array([int(v) for _, v in depths])
    assert z.min() >= 50 and z.max() <= 960
    assert [i for i, _ in depths] != sorted(i for i, _ in depths)


def test_black_tiles(dataset: tuple[Path, dict]) -> None:
    out, summary = dataset
    rles = dict(_read_csv(out / "train.csv"))
    n_black = 0
    for folder in ("train", "test"):
        for png in (out / folder / "images").iterdir():
            img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
            if img.min() == img.max():
                n_black += 1
                if folder == "train":
                    assert rles[png.stem] == ""
    assert n_black == summary["n_black"] >= 2


def test_deterministic_and_independent_of_workers(
    dataset: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = dataset
    again = tmp_path / "again"
    generate_dataset(again, N_TRAIN, N_TEST, seed=SEED, workers=2)  # 80 tiles: process pool
    for name in ("train.csv", "depths.csv", "sample_submission.csv"):
        assert (out / name).read_text() == (again / name).read_text()
    for png in sorted(out.rglob("*.png")):
        assert png.read_bytes() == (again / png.relative_to(out)).read_bytes()
    other = tmp_path / "other"
    generate_dataset(other, 10, 5, seed=SEED + 1, workers=1)
    first = generate_dataset(tmp_path / "first", 10, 5, seed=SEED, workers=1)
    assert first["n_train"] == 10
    assert (other / "train.csv").read_text() != (tmp_path / "first/train.csv").read_text()


def test_make_tile_shapes_and_kinds() -> None:
    rng = np.random.default_rng(0)
    for kind in ("empty", "bottom", "top", "blob", "flank", "vertical", "near_full", "black"):
        img, mask = make_tile(rng, kind)
        assert img.shape == (TILE, TILE) and img.dtype == np.uint8
        assert mask.shape == (TILE, TILE) and mask.dtype == bool
        assert mask.any() == (kind not in ("empty", "black"))
        assert not mask.all()
    img, mask = make_tile(rng, "bottom")
    assert mask[-1].any() and 60 < img.mean() < 190 and 8 < img.std() < 80
    with pytest.raises(ValueError):
        make_tile(rng, "nonsense")


def test_coverage_distribution(tiles: list[tuple[np.ndarray, np.ndarray]]) -> None:
    cov = np.array([m.mean() for _, m in tiles])
    assert 0.30 <= (cov == 0).mean() <= 0.48
    assert (cov > 0.9).sum() >= 1
    assert (cov < 1.0).all(), "no completely full mask"
    vertical = [m.any() and (m == m[:1]).all() for _, m in tiles]
    assert sum(vertical) >= 3
    at_top = sum(m[0].any() and not m[-1].any() for _, m in tiles)
    at_bottom = sum(m[-1].any() and not m[0].any() for _, m in tiles)
    assert at_top >= 5 and at_bottom >= 5
    assert 0.1 < np.median(cov[cov > 0]) < 0.7  # spread over coverage, not all tiny


def _best_threshold_iou(img: np.ndarray, mask: np.ndarray) -> float:
    best = 0.0
    for th in range(0, 256, 3):
        for pred in (img > th, img <= th):
            best = max(best, (pred & mask).sum() / (pred | mask).sum())
    return best


def test_salt_is_learnable_but_not_trivial(tiles: list[tuple[np.ndarray, np.ndarray]]) -> None:
    kernel = np.ones((11, 11), np.uint8)
    std_ratio, ious = [], []
    for img, mask in tiles:
        cov = mask.mean()
        if not 0.15 <= cov <= 0.6:
            continue
        ious.append(_best_threshold_iou(img, mask))
        inside = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
        outside = cv2.erode((~mask).astype(np.uint8), kernel).astype(bool)
        if inside.sum() > 100 and outside.sum() > 100:
            pix = img.astype(float)
            std_ratio.append(pix[inside].std() / max(pix[outside].std(), 1e-6))
    assert len(ious) >= 30
    # A single global intensity threshold does not segment the salt.
    assert np.mean(ious) < 0.6
    # ...but the texture does differ: the salt interior is weaker than the sediments.
    assert np.median(std_ratio) < 0.8
    assert np.mean(np.array(std_ratio) < 1.0) > 0.75


def test_save_preview(dataset: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = dataset
    png = save_preview(out, tmp_path / "preview.png", n=12, seed=1)
    assert png == tmp_path / "preview.png"
    img = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 300
    assert img.std() > 10


def test_salt_contrast_darkens_the_salt_and_keeps_the_default_tiles() -> None:
    gaps = []
    for seed in range(12):
        default = make_tile(np.random.default_rng(seed), "blob")
        plain = make_tile(np.random.default_rng(seed), "blob", salt_contrast=0.0)
        assert all(np.array_equal(a, b) for a, b in zip(default, plain, strict=True))
        img, mask = make_tile(np.random.default_rng(seed), "blob", salt_contrast=1.0)
        assert np.array_equal(mask, plain[1])  # same geometry, other grey levels
        gap = [float(i[~m].mean() - i[m].mean()) for i, m in (plain, (img, mask))]
        gaps.append(gap)
    plain_gap, contrast_gap = np.array(gaps).T
    assert (contrast_gap > plain_gap).all()
    assert np.median(contrast_gap) > 10  # grey levels darker inside the salt
    with pytest.raises(ValueError, match="salt_contrast"):
        make_tile(np.random.default_rng(0), "blob", salt_contrast=1.5)
