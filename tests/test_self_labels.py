"""Pseudo-labels made inside a run: a phase's ``self_labels`` block."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from conftest import write_tgs_dir

from saltseg.config.recipe import SelfLabelConfig
from saltseg.core.rle import decode
from saltseg.data.tiles import TGSDirectory
from saltseg.infer.networks import build_model
from saltseg.nets.zoo import get_model_spec
from saltseg.train.self_labels import sample_test_ids, self_label


def test_self_label_writes_then_reuses_labels(tmp_path: Path, capsys) -> None:
    root = tmp_path / "tgs"
    write_tgs_dir(root, n_train=4, n_test=9, seed=2)
    data = TGSDirectory(root)
    ids = sample_test_ids(data, 7, seed=4)
    black = ids[3]
    cv2.imwrite(str(data.test_images_dir / f"{black}.png"), np.zeros((101, 101), np.uint8))
    spec = get_model_spec("phalanx-v5-tiny")
    model = build_model(spec)
    weights = tmp_path / "w.weights.h5"
    model.save_weights(weights)
    folder = tmp_path / "phase" / "self_labels"
    cfg = SelfLabelConfig(tiles=7, threshold=0.5)

    assert len(ids) == 7 and ids == sorted(ids) and set(ids) <= set(data.test_ids())
    assert sample_test_ids(data, 7, seed=4) == ids != sample_test_ids(data, 7, seed=5)
    assert sample_test_ids(data, 50, seed=4) == sorted(data.test_ids())

    built = []

    def build():
        built.append(1)
        return model

    got = self_label(build, spec, weights, data, cfg, folder, seed=4)
    expected = [i for i in ids if i != black]
    assert got.ids == expected and got.images.shape == (len(expected), 101, 101)
    assert got.masks.dtype == bool and got.masks.shape == got.images.shape
    csv = pd.read_csv(folder / "pseudo_labels.csv", keep_default_na=False)
    assert csv["id"].tolist() == expected
    for rle, mask in zip(csv["rle_mask"], got.masks, strict=True):
        assert np.array_equal(decode(rle), mask)
    info = json.loads((folder / "DONE.json").read_text())
    assert info["tiles"] == len(expected) and info["black_left_out"] == 1

    # a resumed run trains on the same tiles, without labelling them again
    capsys.readouterr()
    (folder / "pseudo_labels.csv").write_text(csv.assign(rle_mask="1 5").to_csv(index=False))
    again = self_label(build, spec, weights, data, cfg, folder, seed=4)
    assert "labelled before, reused" in capsys.readouterr().out
    assert again.ids == expected and again.masks[:, :5, 0].all()
    assert len(built) == 1  # reused labels need no network
