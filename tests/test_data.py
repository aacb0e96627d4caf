from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from saltseg.core import rle
from saltseg.core.errors import DataError
from saltseg.data.tiles import (
    TGSDirectory,
    ids_from_folder,
    is_black,
    load_folder,
    read_image,
    read_images,
    read_mask,
)


def test_load_train_sorted_and_matching(tgs_dir) -> None:
    root, written = tgs_dir
    train = TGSDirectory(root).load_train()
    assert train.ids == sorted(train.ids) and len(train) == 12
    assert train.images.dtype == np.uint8 and train.images.shape == (12, 101, 101)
    assert train.masks.dtype == bool
    for i, tid in enumerate(train.ids):
        np.testing.assert_array_equal(train.images[i], written[tid])
        np.testing.assert_array_equal(train.masks[i], written[tid + "_mask"])
    assert train.black.sum() == 1
    assert not np.isnan(train.depths).any()


def test_load_test_ids_sorted(tgs_dir) -> None:
    root, written = tgs_dir
    data = TGSDirectory(root)
    test = data.load_test()
    assert test.ids == sorted(test.ids) and len(test) == 6
    for i, tid in enumerate(test.ids):
        np.testing.assert_array_equal(test.images[i], written[tid])
    order = data.submission_order()
    assert order is not None and sorted(order) == test.ids
    (root / "sample_submission.csv").unlink()
    assert data.test_ids() == test.ids  # falls back to sorted file names


def test_gray_and_16bit_and_alpha(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (101, 101), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), img)
    cv2.imwrite(str(tmp_path / "c.png"), cv2.merge([img] * 3))
    cv2.imwrite(str(tmp_path / "a.png"), cv2.merge([img] * 3 + [np.full_like(img, 255)]))
    cv2.imwrite(str(tmp_path / "w.png"), img.astype(np.uint16) * 257)
    for name in "gcaw":
        np.testing.assert_array_equal(read_image(tmp_path / f"{name}.png"), img, err_msg=name)
    color = cv2.merge([img, img // 2, img // 3])
    cv2.imwrite(str(tmp_path / "rgb.png"), color)
    out = read_image(tmp_path / "rgb.png")
    np.testing.assert_array_equal(out, cv2.cvtColor(color, cv2.COLOR_BGR2GRAY))


def test_masks_8_and_16_bit(tmp_path: Path) -> None:
    m = np.zeros((101, 101), bool)
    m[30:60, 10:90] = True
    cv2.imwrite(str(tmp_path / "m8.png"), m.astype(np.uint8) * 255)
    cv2.imwrite(str(tmp_path / "m16.png"), m.astype(np.uint16) * 65535)
    cv2.imwrite(str(tmp_path / "m1.png"), m.astype(np.uint8))
    for name in ("m8", "m16", "m1"):
        np.testing.assert_array_equal(read_mask(tmp_path / f"{name}.png"), m)


def test_black_detection() -> None:
    imgs = np.zeros((3, 101, 101), np.uint8)
    imgs[1] = 7
    imgs[2, 5, 5] = 1
    assert is_black(imgs).tolist() == [True, True, False]


def test_parallel_equals_serial(tgs_dir) -> None:
    root, _ = tgs_dir
    paths = sorted((root / "train/images").glob("*.png")) * 10
    np.testing.assert_array_equal(read_images(paths, workers=1), read_images(paths, workers=3))


def test_folder_ids_sorted(tmp_path: Path) -> None:
    for tid in ["c", "a", "b"]:
        cv2.imwrite(str(tmp_path / f"{tid}.png"), np.zeros((101, 101), np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    assert ids_from_folder(tmp_path) == ["a", "b", "c"]
    assert load_folder(tmp_path).ids == ["a", "b", "c"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \.png"):
        ids_from_folder(tmp_path / "empty")


# ------------------------------------------------------------------ errors name the culprit


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data folder not found"):
        TGSDirectory(tmp_path / "nope")


def test_missing_masks_folder(tgs_dir) -> None:
    root, _ = tgs_dir
    shutil.rmtree(root / "train/masks")
    with pytest.raises(DataError, match=r"train/masks: folder not found"):
        TGSDirectory(root).load_train()


def test_missing_csv(tgs_dir) -> None:
    root, _ = tgs_dir
    (root / "train.csv").unlink()
    with pytest.raises(DataError, match=r"train.csv: file not found"):
        TGSDirectory(root).load_train()


def test_id_without_image(tgs_dir) -> None:
    root, _ = tgs_dir
    df = pd.read_csv(root / "train.csv", keep_default_na=False)
    victim = df["id"].iloc[3]
    (root / "train/images" / f"{victim}.png").unlink()
    with pytest.raises(DataError, match=rf"id '{victim}' listed without its image"):
        TGSDirectory(root).load_train()


def test_wrong_size(tgs_dir) -> None:
    root, _ = tgs_dir
    victim = TGSDirectory(root).train_ids()[2]
    cv2.imwrite(str(root / "train/images" / f"{victim}.png"), np.zeros((100, 101), np.uint8))
    with pytest.raises(DataError, match=rf"{victim}.png: image is 101x100, expected 101x101"):
        TGSDirectory(root).load_train()


def test_corrupt_png(tgs_dir) -> None:
    root, _ = tgs_dir
    victim = TGSDirectory(root).test_ids()[1]
    (root / "test/images" / f"{victim}.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=rf"{victim}.png: unreadable or corrupt"):
        TGSDirectory(root).load_test()


def test_non_binary_mask(tgs_dir) -> None:
    root, _ = tgs_dir
    victim = TGSDirectory(root).train_ids()[4]
    m = np.zeros((101, 101), np.uint8)
    m[:10] = 128
    m[10:20] = 255
    cv2.imwrite(str(root / "train/masks" / f"{victim}.png"), m)
    with pytest.raises(DataError, match=rf"{victim}.png: mask is not binary"):
        TGSDirectory(root).load_train()


def test_duplicate_ids(tgs_dir) -> None:
    root, _ = tgs_dir
    df = pd.read_csv(root / "train.csv", keep_default_na=False)
    pd.concat([df, df.iloc[[5]]]).to_csv(root / "train.csv", index=False)
    with pytest.raises(DataError, match=rf"duplicate id '{df['id'].iloc[5]}'"):
        TGSDirectory(root).load_train()


def test_rle_disagrees_with_png(tgs_dir) -> None:
    root, written = tgs_dir
    df = pd.read_csv(root / "train.csv", keep_default_na=False)
    victim = df["id"].iloc[0]
    m = written[victim + "_mask"].copy()
    m[50, 50] = not m[50, 50]
    df.loc[0, "rle_mask"] = rle.encode(m)
    df.to_csv(root / "train.csv", index=False)
    with pytest.raises(DataError, match=rf"id '{victim}': rle_mask disagrees .* in 1 pixel"):
        TGSDirectory(root).load_train()
    TGSDirectory(root).load_train(verify_rle=False)  # explicitly skipped check


def test_bad_depth(tgs_dir) -> None:
    root, _ = tgs_dir
    df = pd.read_csv(root / "depths.csv")
    df["z"] = df["z"].astype(object)
    df.loc[2, "z"] = "deep"
    df.to_csv(root / "depths.csv", index=False)
    with pytest.raises(DataError, match=rf"id '{df['id'].iloc[2]}' has a non-numeric depth"):
        TGSDirectory(root).depths()


# ------------------------------------------------------------------ real data


@pytest.mark.realdata
@pytest.mark.slow
def test_real_data_loads(tgs_data) -> None:
    data = TGSDirectory(tgs_data)
    train = data.load_train(verify_rle=True)
    assert len(train) == len(pd.read_csv(tgs_data / "train.csv"))
    assert train.images.shape[1:] == (101, 101)
    assert 0.3 < (train.coverage == 0).mean() < 0.45
    assert train.black.sum() > 0
    assert not train.masks[train.black].any()  # black tiles carry no salt
    assert not np.isnan(train.depths).any()
    test = data.load_test()
    assert len(test) == len(pd.read_csv(tgs_data / "sample_submission.csv"))
    assert test.black.sum() > 0
