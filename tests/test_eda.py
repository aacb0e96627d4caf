"""``saltseg eda`` on synthetic data: files written, numbers equal to the data's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from saltseg.cli.main import main
from saltseg.data import synthetic
from saltseg.data.tiles import TGSDirectory
from saltseg.report.eda import COVERAGE_LABELS, coverage_class, pick_samples

FIGURES = ("eda_samples.png", "eda_coverage.png", "eda_depth.png", "eda_images.png")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eda") / "synth"
    synthetic.generate_dataset(root, n_train=80, n_test=40, seed=3, workers=1)
    return root


@pytest.fixture(scope="module")
def eda_out(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eda_out")
    assert main(["eda", str(synth), "--out", str(out), "--samples", "12"]) == 0
    return out


def _png_ok(path: Path) -> None:
    img = cv2.imread(str(path))
    assert img is not None, path
    assert img.shape[0] >= 150 and img.shape[1] >= 300, (path, img.shape)


def test_files_written(eda_out: Path) -> None:
    for name in FIGURES:
        _png_ok(eda_out / name)
    md = (eda_out / "summary.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in md
    assert json.loads((eda_out / "summary.json").read_text())["masks"]["tiles"] == 80


def test_markdown_numbers_match_data(synth: Path, eda_out: Path) -> None:
    md = (eda_out / "summary.md").read_text()
    data = TGSDirectory(synth)
    train, test = data.load_train(), data.load_test()
    z = pd.read_csv(synth / "depths.csv").set_index("id")["z"]
    for name, ids, images in (("train", train.ids, train.images), ("test", test.ids, test.images)):
        flat = images.reshape(len(images), -1)
        black = int((flat.min(axis=1) == flat.max(axis=1)).sum())
        zs = z.loc[ids]
        row = (
            f"| {name} | {len(ids)} | {black} | {len(ids)} | {zs.min():.0f} | {zs.max():.0f} "
            f"| {zs.mean():.1f} | {images.mean():.2f} | {images.std():.2f} |"
        )
        assert row in md
    pixels = train.masks.reshape(len(train), -1).sum(axis=1)
    empty = int((pixels == 0).sum())
    assert f"- empty masks: {empty} ({empty / len(train):.1%})" in md
    cov = pixels / 10201.0
    expected = np.zeros(11, int)
    for c in cov:  # independent binning in floats (no tile sits on a 10% boundary)
        expected[0 if c == 0 else min(10, 1 + int(c * 10))] += 1
    for label, n in zip(COVERAGE_LABELS, expected, strict=True):
        assert f"| {label} | {n} | {n / len(train):.1%} |" in md
    assert f"| q0.5 | {np.median(cov):.4f} | {np.median(cov[cov > 0]):.4f} |" in md
    assert f"- mean coverage: {cov.mean():.4f}" in md


def test_no_test_images_no_depths(synth: Path, tmp_path: Path) -> None:
    root = tmp_path / "bare"
    shutil.copytree(synth, root, ignore=shutil.ignore_patterns("test", "depths.csv"))
    out = tmp_path / "out"
    assert main(["eda", str(root), "--out", str(out), "--samples", "6"]) == 0
    md = (out / "summary.md").read_text()
    assert "test split left out" in md and "no depths.csv" in md
    assert "| test |" not in md
    assert "| train | 80 |" in md
    assert not (out / "eda_depth.png").exists()
    _png_ok(out / "eda_samples.png")


def test_coverage_class_boundaries() -> None:
    got = coverage_class(np.array([0, 1, 1020, 1021, 5101, 9180, 9181, 10201]), 10201)
    assert got.tolist() == [0, 1, 1, 2, 6, 9, 10, 10]
    # exactly 10% (possible on a 10x10 mask, not on a 101x101 tile) is in 0-10%, as the
    # folds count it: one coverage_class for EDA, review and folds
    assert coverage_class(np.array([10, 11, 90, 91, 100]), 100).tolist() == [1, 2, 9, 10, 10]
    assert COVERAGE_LABELS[1] == "0-10%" and COVERAGE_LABELS[10] == "90-100%"


def test_pick_samples_spread() -> None:
    cov = np.r_[np.zeros(10), np.linspace(0.01, 1, 30)]
    idx = pick_samples(cov, 8, seed=0)
    assert len(idx) == 8 and (cov[idx] == 0).sum() == 2
    assert np.all(np.diff(cov[idx]) >= 0) and cov[idx].max() == 1.0


def test_eda_code_does_not_import_keras(synth: Path, tmp_path: Path) -> None:
    """The command's own code stays light (``cli.main`` may still pre-import keras)."""
    argv = ["eda", str(synth), "--out", str(tmp_path), "--skip-test", "--samples", "4"]
    code = (
        "import sys; from saltseg.cli.main import build_parser; "
        f"args = build_parser().parse_args({argv!r}); assert args.func(args) == 0; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
