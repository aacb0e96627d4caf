"""Shared fixtures: small hand-made TGS folders, and the real data when TGS_DATA is set."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from saltseg.core import rle

# Predictions in tests use float32 Keras, whatever the bench recorded on this machine for
# `--backend auto` (saltseg.infer.choice); subprocesses inherit this.
os.environ["SALTSEG_BACKEND_CHOICE"] = os.devnull

_TGS = os.environ.get("TGS_DATA")
TGS_DATA: Path | None = Path(_TGS).resolve() if _TGS else None


@pytest.fixture(scope="session")
def tgs_data() -> Path:
    """The real Kaggle TGS folder; the test is skipped unless TGS_DATA points at it."""
    if TGS_DATA is None:
        pytest.skip("TGS_DATA is not set")
    if not (TGS_DATA / "train.csv").is_file():
        pytest.fail(f"TGS_DATA={TGS_DATA} does not hold train.csv")
    return TGS_DATA


def random_mask(rng: np.random.Generator, size: int = 101) -> np.ndarray:
    """A smooth random blob (or empty) mask."""
    if rng.random() < 0.35:
        return np.zeros((size, size), bool)
    field = rng.normal(size=(size // 10 + 2, size // 10 + 2)).astype(np.float32)
    field = cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC)
    return field > rng.uniform(-0.5, 1.2)


def write_tgs_dir(
    root: Path, n_train: int = 12, n_test: int = 6, seed: int = 0, *, rgb: bool = True
) -> dict[str, np.ndarray]:
    """Write a small TGS-format folder; return the images and masks written, by id."""
    rng = np.random.default_rng(seed)
    for d in ("train/images", "train/masks", "test/images"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ids = [f"{x:010x}" for x in rng.choice(16**9, size=n_train + n_test, replace=False)]
    train_ids, test_ids = ids[:n_train], ids[n_train:]
    written: dict[str, np.ndarray] = {}
    rows = []
    for i, tid in enumerate(train_ids):
        img = rng.integers(0, 256, size=(101, 101), dtype=np.uint8)
        if i == 0:
            img[:] = 0  # a black tile
        mask = random_mask(rng) if i else np.zeros((101, 101), bool)
        cv2.imwrite(str(root / "train/images" / f"{tid}.png"), cv2.merge([img] * 3) if rgb else img)
        cv2.imwrite(str(root / "train/masks" / f"{tid}.png"), mask.astype(np.uint16) * 65535)
        rows.append((tid, rle.encode(mask)))
        written[tid] = img
        written[tid + "_mask"] = mask
    for tid in test_ids:
        img = rng.integers(0, 256, size=(101, 101), dtype=np.uint8)
        cv2.imwrite(str(root / "test/images" / f"{tid}.png"), cv2.merge([img] * 3) if rgb else img)
        written[tid] = img
    # CSV rows deliberately not sorted.
    pd.DataFrame(rows[::-1], columns=["id", "rle_mask"]).to_csv(root / "train.csv", index=False)
    depths = pd.DataFrame({"id": ids, "z": rng.integers(50, 960, size=len(ids))})
    depths.sample(frac=1, random_state=seed).to_csv(root / "depths.csv", index=False)
    pd.DataFrame({"id": test_ids, "rle_mask": "1 1"}).to_csv(
        root / "sample_submission.csv", index=False
    )
    return written


@pytest.fixture
def tgs_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "tgs"
    return root, write_tgs_dir(root)
