"""``saltseg segy predict`` with a trained network recovers a known 3D salt body.

A tiny network (phalanx-v5-tiny) is trained once for this module, with ``saltseg.train``,
on 101x101 tiles cut from the inlines and crosslines of one synthetic volume
(:func:`saltseg.data.synthetic.make_volume`); it then predicts another volume (another seed:
another dome, other layers, other noise) through the command line, in each direction and in
both, and the masks must overlap the true body with IoU >= ``MIN_IOU``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import segyio
import yaml

from saltseg.cli.main import main
from saltseg.core import rle
from saltseg.data.segy import AmplitudeMap, write_volume
from saltseg.data.synthetic import make_volume

pytestmark = pytest.mark.slow

MIN_IOU = 0.8
"""Measured 0.89 inline, 0.94 crossline, 0.93 both (docs/segy.md)."""
SHAPE = (108, 112, 150)
RECIPE = {
    "family": "phalanx",
    "stage": "segy_test",
    "description": "phalanx-v5-tiny on tiles of a synthetic volume",
    "model": "phalanx-v5-tiny",
    "n_folds": 5,
    "folds": [0],
    "fold_method": "depth",
    "seed": 0,
    "phases": [
        {
            "name": "fit",
            "loss": "bce_dice",
            "optimizer": {"name": "adam", "lr": 3.0e-3},
            "batch_size": 16,
            "schedule": "constant",
            "epochs": 6,
            "init": "scratch",
            "augmentation": "none",
        }
    ],
    "predict": [{"phase": "fit", "file": "best"}],
    "profiles": {},
}


def _write_tiles(
    root: Path, vol: np.ndarray, salt: np.ndarray, n: int, first: int, seed: int
) -> None:
    """``n`` random 101x101 windows of inlines and crosslines into a TGS-format folder
    (ids ``first..first + n - 1``; the CSVs are appended to)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.percentile(vol, [0.5, 99.5])
    amap = AmplitudeMap((0.5, 99.5), float(lo), float(hi), "symmetric", 0, 0)
    for sub in ("train/images", "train/masks", "test/images"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(first, first + n):
        k = int(rng.integers(0, SHAPE[i % 2]))
        section, mask = (vol[k], salt[k]) if i % 2 == 0 else (vol[:, k], salt[:, k])
        grey, mask = amap.to_grey(section).T, mask.T
        r = int(rng.integers(0, grey.shape[0] - 100))
        c = int(rng.integers(0, grey.shape[1] - 100))
        tid = f"{i:010x}"
        cv2.imwrite(str(root / "train/images" / f"{tid}.png"), grey[r : r + 101, c : c + 101])
        tile_mask = mask[r : r + 101, c : c + 101]
        cv2.imwrite(str(root / "train/masks" / f"{tid}.png"), tile_mask.astype(np.uint16) * 65535)
        rows.append(f"{tid},{rle.encode(tile_mask)}\n")
    depths = "".join(f"{i:010x},{int(rng.integers(50, 900))}\n" for i in range(first, first + n))
    for name, head, body in (
        ("train.csv", "id,rle_mask", "".join(rows)),
        ("depths.csv", "id,z", depths),
    ):
        path = root / name
        path.write_text((path.read_text() if first else head + "\n") + body)
    (root / "sample_submission.csv").write_text("id,rle_mask\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A workspace: SETTINGS.json, the recipe, its trained weights and a test volume."""
    from saltseg.config.recipe import load_recipe
    from saltseg.config.settings import load_settings
    from saltseg.train.stage import train_stage

    root = tmp_path_factory.mktemp("segy_model")
    for seed in (21, 23):  # two surveys: one would teach its own look, not salt
        vol, salt = make_volume(seed, *SHAPE)
        _write_tiles(root / "data", vol, salt, n=250, first=250 * (seed == 23), seed=seed)
    (root / "SETTINGS.json").write_text(json.dumps({"DATA_DIR": "data", "PROFILE": "tiny"}))
    (root / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    settings = load_settings(root / "SETTINGS.json")
    train_stage(load_recipe(root / "recipe.yaml", "full"), settings, profile="full", verbose=0)
    test_vol, test_salt = make_volume(22, *SHAPE)
    write_volume(root / "test.sgy", test_vol, ilines=np.arange(1001, 1001 + SHAPE[0]))
    np.save(root / "truth.npy", test_salt)
    return root


def _predict(root: Path, direction: str) -> np.ndarray:
    out = root / f"out_{direction}"
    code = main(
        [
            "--settings",
            str(root / "SETTINGS.json"),
            "segy",
            "predict",
            str(root / "test.sgy"),
            "--out",
            str(out),
            "--recipe",
            str(root / "recipe.yaml"),
            "--profile",
            "full",
            "--direction",
            direction,
            "--no-tta",
            "--preview-lines",
            "inline:1040",
            "xl:50",
        ]
    )
    assert code == 0
    assert (out / "preview" / "inline_1040.png").is_file()
    assert (out / "preview" / "crossline_50.png").is_file()
    with segyio.open(out / "salt_mask.sgy") as f:
        return segyio.tools.cube(f) > 0.5


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("direction", ["inline", "crossline", "both"])
def test_the_trained_network_recovers_the_salt_body(trained: Path, direction: str) -> None:
    truth = np.load(trained / "truth.npy")
    iou = _iou(_predict(trained, direction), truth)
    print(f"IoU {direction}: {iou:.3f}")
    assert iou >= MIN_IOU, iou


def test_output_samples_are_what_the_tiling_code_produced(trained: Path) -> None:
    """One line of the written probability volume, recomputed in memory."""
    from saltseg.config.layout import stage_dir
    from saltseg.config.recipe import load_recipe
    from saltseg.config.settings import load_settings
    from saltseg.infer.stage import StagePredictor, stage_weight_files
    from saltseg.infer.tiling import StageTiles, predict_section

    out = trained / "out_inline"
    if not (out / "salt_probability.sgy").is_file():
        _predict(trained, "inline")
    recipe = load_recipe(trained / "recipe.yaml", "full")
    root = stage_dir(load_settings(trained / "SETTINGS.json"), recipe)
    files = stage_weight_files(recipe, root)
    tiles = StageTiles([(StagePredictor(recipe, files), sorted(files))], flip_tta=False)
    clip = json.loads((out / "amplitude_mapping.json").read_text())["clip"]
    amap = AmplitudeMap((0.5, 99.5), clip[0], clip[1], "range", 0, 0)
    with segyio.open(trained / "test.sgy") as src, segyio.open(out / "salt_probability.sgy") as f:
        for il in (1001, 1050):
            expected = predict_section(amap.to_grey(src.iline[il]).T, tiles).T
            np.testing.assert_allclose(f.iline[il], expected, atol=1e-5)
