"""Probability files, the ensemble, pseudo-label selection and weight-file discovery."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from bes.pseudo import select_bes
from phalanx.pseudo import phalanx_bins, select_phalanx
from saltseg.config.recipe import load_stage
from saltseg.core.errors import DataError
from saltseg.core.rle import decode
from saltseg.data.probs import ProbMaps, ProbWriter, partial_path, quantize, read_probs, write_probs
from saltseg.data.submission import read_rle_csv
from saltseg.infer.stage import stage_weight_files
from saltseg.post.ensemble import blend, submission_order, to_masks, write_submission
from saltseg.post.pseudo import confidence, is_complete, make_pseudo_labels

IDS = [f"t{i:03d}" for i in range(10)]


def _maps(values: list[float], family: str = "bes") -> ProbMaps:
    q = np.stack([np.full((101, 101), quantize(np.float32(v))) for v in values])
    return ProbMaps([f"t{i:03d}" for i in range(len(values))], q, {"family": family})


# --------------------------------------------------------------------------- probs


def test_write_read_roundtrip_sorts_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    prob = rng.random((5, 101, 101), dtype=np.float32)
    ids = ["e", "b", "d", "a", "c"]
    write_probs(tmp_path / "p.h5", ids, prob, {"family": "bes"})
    m = read_probs(tmp_path / "p.h5")
    assert m.ids == ["a", "b", "c", "d", "e"]
    order = np.argsort(ids)
    assert np.abs(m.float() - prob[order]).max() <= 0.5 / 255 + 1e-6
    assert m.meta["family"] == "bes"
    assert m.take(["d", "a"]).ids == ["d", "a"]
    with pytest.raises(DataError, match="'zz'"):
        m.take(["zz"])


def test_writer_resumes_partial_file_and_renames_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "p.h5"
    w = ProbWriter(out, IDS, {"x": 1})
    w.write(0, np.full((4, 101, 101), 0.25, dtype=np.float32))
    w.abort()  # a crash after the first chunk
    assert not out.exists() and partial_path(out).is_file()
    with pytest.raises(DataError, match="partial"):
        read_probs(out)
    w = ProbWriter(out, IDS, {"x": 1})
    assert w.rows_done == 4
    w.write(4, np.full((6, 101, 101), 0.75, dtype=np.float32))
    w.close()
    m = read_probs(out)
    assert not partial_path(out).exists()
    assert np.allclose(m.float()[:4], 0.25, atol=0.003) and np.allclose(
        m.float()[4:], 0.75, atol=0.003
    )
    # different inputs: the partial file is not reused
    w = ProbWriter(out, IDS, {"x": 2})
    assert w.rows_done == 0
    w.abort()


def test_writer_refuses_incomplete_close(tmp_path: Path) -> None:
    w = ProbWriter(tmp_path / "p.h5", IDS, {})
    w.write(0, np.zeros((3, 101, 101), dtype=np.float32))
    with pytest.raises(ValueError, match="only 3 of 10"):
        w.close()


# --------------------------------------------------------------------------- ensemble


def test_blend_minmax_normalises_phalanx_only() -> None:
    bes = _maps([0.2, 0.4, 0.6])
    phalanx = _maps([0.1, 0.2, 0.3], family="phalanx")
    b = blend([bes, phalanx], [0.5, 0.5])
    assert b.normalised == [False, True]
    got = b.q[:, 0, 0] / 255.0
    # phalanx 0.1..0.3 -> 0..1; blend = 0.5 * bes + 0.5 * normalised phalanx
    assert np.allclose(got, [0.1, 0.45, 0.8], atol=0.005)
    none = blend([bes, phalanx], minmax="none")
    assert np.allclose(none.q[:, 0, 0] / 255.0, [0.15, 0.3, 0.45], atol=0.005)


def test_blend_aligns_ids_and_refuses_different_sets() -> None:
    a = _maps([0.2, 0.8])
    b = ProbMaps(a.ids[::-1], a.q[::-1].copy(), {"family": "bes"})
    out = blend([a, b])
    assert np.array_equal(out.q, a.q)
    c = ProbMaps(["t000", "x"], a.q.copy(), {"family": "bes"})
    with pytest.raises(DataError):
        blend([a, c])


def test_masks_threshold_and_black_tiles() -> None:
    m = _maps([0.3, 0.7, 0.9])
    masks = to_masks(m.q, 0.5, np.array([False, False, True]))
    assert [bool(x.any()) for x in masks] == [False, True, False]
    masks = to_masks(m.q, 0.2, np.zeros(3, bool))
    assert all(x.all() for x in masks)


def test_submission_follows_sample_order_else_sorted(tmp_path: Path) -> None:
    ids = ["b", "a", "c"]
    masks = np.zeros((3, 101, 101), bool)
    masks[0, :5, :5] = True
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("id,rle_mask\nc,1 1\nb,1 1\na,1 1\n")
    order = submission_order(sample, ids)
    write_submission(tmp_path / "s.csv", ids, masks, order)
    got_ids, got = read_rle_csv(tmp_path / "s.csv")
    assert got_ids == ["c", "b", "a"] and got[1].sum() == 25
    assert submission_order(sample, ["a", "b"]) is None  # other ids: sorted order
    write_submission(tmp_path / "t.csv", ids, masks, None)
    assert read_rle_csv(tmp_path / "t.csv")[0] == ["a", "b", "c"]


# --------------------------------------------------------------------------- pseudo


def test_confidence_counts_sure_pixels() -> None:
    p = np.full((1, 101, 101), 0.5, dtype=np.float32)
    p[0, :50] = 0.9
    p[0, 50:60] = 0.1
    assert confidence(p)[0] == pytest.approx(60 * 101 / 101**2)


def test_bes_rule() -> None:
    conf = np.array([0.95, 0.85, 0.99])
    black = np.array([False, False, True])
    assert select_bes(conf, black).tolist() == [True, False, False]


def test_phalanx_bins_edges() -> None:
    n = 101 * 101
    pixels = np.array([0, 1, 19, 20, 500, 501, n // 4, n // 4 + 1, n // 2, 3 * n // 4, 9200, n])
    assert phalanx_bins(pixels).tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 7]
    assert phalanx_bins(np.array([int(0.85 * n)])).tolist() == [6]


def test_phalanx_rule_selects_and_balances_folds() -> None:
    rng = np.random.default_rng(0)
    n = 400
    pixels = rng.choice([0, 10, 100, 2000, 4000, 7000, 8500, 9500], size=n)
    conf = rng.uniform(0.96, 1.0, size=n)
    black = np.zeros(n, bool)
    black[:5] = True
    chosen, folds = select_phalanx(conf, pixels, black)
    assert not chosen[black].any()
    assert not chosen[conf < 0.97].any()
    assert not chosen[(pixels == 10) | (pixels == 9500)].any()  # 1-19 px and >= 90%
    small = pixels == 100
    assert not chosen[small & (conf < 0.99)].any() and chosen[small & (conf >= 0.99)].any()
    empty_ok = (pixels == 0) & (conf >= 0.97) & ~black
    assert chosen[empty_ok].sum() == (empty_ok.sum() + 1) // 2  # every 2nd empty mask
    assert (folds[chosen] >= 0).all() and (folds[~chosen] == -1).all()
    counts = np.bincount(folds[chosen], minlength=5)
    assert counts.max() - counts.min() <= 7  # dealt per size bin: at most one per bin apart


def test_make_pseudo_labels_writes_csv_masks_and_done(tmp_path: Path) -> None:
    values = [0.95, 0.05, 0.5, 0.99]
    m = _maps(values)
    m.meta["path"] = str(tmp_path / "blend.h5")
    (tmp_path / "blend.h5").write_bytes(b"x")
    black = np.array([False, False, False, True])
    out = tmp_path / "pseudo" / "round1_bes"
    res = make_pseudo_labels(m, black, "bes", out)
    assert res.n_chosen == 2  # the 0.5 tile is unsure, the last one is black
    df = pd.read_csv(out / "pseudo_labels.csv", dtype=str, keep_default_na=False)
    assert df["id"].tolist() == ["t000", "t001"] and "fold" not in df.columns
    assert decode(df["rle_mask"][0]).all() and not decode(df["rle_mask"][1]).any()
    png = cv2.imread(str(out / "masks" / "t000.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint8 and set(np.unique(png)) == {255}
    tiles = pd.read_csv(out / "tiles.csv")
    assert tiles["chosen"].tolist() == [1, 1, 0, 0] and tiles["black"].tolist() == [0, 0, 0, 1]
    assert json.loads((out / "DONE.json").read_text())["n_chosen"] == 2
    assert is_complete(out, tmp_path / "blend.h5", "bes")
    assert not is_complete(out, tmp_path / "blend.h5", "phalanx")
    res = make_pseudo_labels(m, black, "all", tmp_path / "all")
    assert res.n_chosen == 3


# --------------------------------------------------------------------------- weights


def _fake_phase(folder: Path, files: list[str]) -> None:
    folder.mkdir(parents=True)
    for f in files:
        (folder / f).write_bytes(b"w")
    (folder / "DONE.json").write_text("{}")


def test_stage_weight_files_follow_the_recipe(tmp_path: Path) -> None:
    recipe = load_stage("bes", "stage2", "tiny")
    root = tmp_path / "stage2"
    _fake_phase(root / "fold_0" / "finetune", ["best.weights.h5", "last.weights.h5"])
    # b.e.s. stage 2 predicts with each snapshot cycle's best-validation file (numeric order)
    snaps = [f"{kind}_{c}.weights.h5" for c in (0, 1, 10) for kind in ("snapshot", "cycle_best")]
    _fake_phase(root / "fold_0" / "snapshots", ["best.weights.h5", *snaps])
    files = stage_weight_files(recipe, root)[0]
    assert [(w.path.name, w.weight) for w in files] == [
        ("best.weights.h5", 3.0),
        ("cycle_best_0.weights.h5", 1.0),
        ("cycle_best_1.weights.h5", 1.0),
        ("cycle_best_10.weights.h5", 1.0),
    ]
    phalanx = load_stage("phalanx", "stage1", "tiny")  # snapshots 1-5 only
    proot = tmp_path / "p1"
    _fake_phase(proot / "fold_0" / "cycles", [f"snapshot_{c}.weights.h5" for c in (0, 1)])
    assert [w.path.name for w in stage_weight_files(phalanx, proot)[0]] == ["snapshot_1.weights.h5"]


def test_stage_weight_files_name_what_is_missing(tmp_path: Path) -> None:
    recipe = load_stage("bes", "stage2", "tiny")
    with pytest.raises(DataError, match="fold_0/finetune: phase not finished"):
        stage_weight_files(recipe, tmp_path)
    _fake_phase(tmp_path / "fold_0" / "finetune", [])
    _fake_phase(tmp_path / "fold_0" / "snapshots", [])
    with pytest.raises(DataError, match="no best weights"):
        stage_weight_files(recipe, tmp_path)


def test_top_up_adds_the_most_confident_non_black_tiles(tmp_path: Path) -> None:
    m = _maps([0.6, 0.95, 0.5, 0.1, 0.99])
    black = np.array([False, False, False, False, True])
    res = make_pseudo_labels(m, black, "phalanx", tmp_path / "p", min_tiles=3)
    df = pd.read_csv(tmp_path / "p" / "pseudo_labels.csv")
    # nothing passes the phalanx rule (uniform maps are not 20-500 px / every 2nd empty...)
    assert res.n_chosen == 3 and res.topped_up >= 1
    assert "t004" not in set(df["id"])  # black never
    assert set(df["id"]) <= {"t000", "t001", "t003"}
    assert (df["fold"] >= 0).all()


def test_predict_command_names_the_missing_training(tmp_path: Path, capsys) -> None:
    from saltseg.cli.main import main

    settings = tmp_path / "SETTINGS.json"
    settings.write_text(json.dumps({"DATA_DIR": str(tmp_path), "PREDICTIONS_DIR": "pred"}))
    code = main(["--settings", str(settings), "predict", "--family", "bes", "--stage", "stage1"])
    err = capsys.readouterr().err
    assert code == 2 and "phase not finished" in err and "saltseg train --family bes" in err
