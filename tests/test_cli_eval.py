from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saltseg.cli.main import main
from saltseg.core import metric, rle
from saltseg.data.submission import read_rle_csv, write_rle_csv


def _write(path: Path, ids: list[str], masks: np.ndarray) -> None:
    pd.DataFrame({"id": ids, "rle_mask": [rle.encode(m) for m in masks]}).to_csv(path, index=False)


@pytest.fixture
def pair(tmp_path: Path):
    rng = np.random.default_rng(3)
    ids = [f"id{i:03d}" for i in range(40)]
    truth = rng.random((40, 101, 101)) > 0.5
    truth[:15] = False
    pred = truth.copy()
    pred[20:30] = rng.random((10, 101, 101)) > 0.5
    pred[10:12, 0, 0] = True
    _write(tmp_path / "truth.csv", ids, truth)
    _write(tmp_path / "pred.csv", ids[::-1], pred[::-1])  # different row order is fine
    return tmp_path, ids, truth, pred


def test_eval_prints_score_last(pair, capsys) -> None:
    d, _ids, truth, pred = pair
    assert (
        main(["eval", str(d / "truth.csv"), str(d / "pred.csv"), "--per-image", str(d / "p.csv")])
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"score: {metric.score(truth, pred):.6f}"
    per = pd.read_csv(d / "p.csv")
    assert len(per) == 40 and set(per.columns) >= {"id", "score"}
    assert per["score"].mean() == pytest.approx(metric.score(truth, pred), abs=1e-4)


def test_eval_refuses_mismatched_ids(pair, capsys) -> None:
    d, ids, _truth, pred = pair
    _write(d / "short.csv", [*ids[:-2], "zzz"], pred[:-1])
    assert main(["eval", str(d / "truth.csv"), str(d / "short.csv")]) == 2
    err = capsys.readouterr().err
    assert "id sets differ" in err and "zzz" in err and "id038" in err


def test_eval_names_bad_rle(pair, capsys) -> None:
    d, ids, _, _ = pair
    df = pd.DataFrame({"id": ids, "rle_mask": [""] * 39 + ["5 3 1 1"]})
    df.to_csv(d / "bad.csv", index=False)
    assert main(["eval", str(d / "truth.csv"), str(d / "bad.csv")]) == 2
    assert "id039" in capsys.readouterr().err


def test_eval_missing_column(pair, capsys) -> None:
    d, ids, _, _ = pair
    pd.DataFrame({"id": ids, "mask": ""}).to_csv(d / "nocol.csv", index=False)
    assert main(["eval", str(d / "truth.csv"), str(d / "nocol.csv")]) == 2
    assert "rle_mask" in capsys.readouterr().err


def test_write_rle_csv_order_and_checks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((3, 101, 101)) > 0.5
    write_rle_csv(tmp_path / "s.csv", ["b", "a", "c"], masks, order=["c", "a", "b"])
    ids, back = read_rle_csv(tmp_path / "s.csv")
    assert ids == ["c", "a", "b"]
    np.testing.assert_array_equal(back, masks[[2, 1, 0]])
    write_rle_csv(tmp_path / "t.csv", ["b", "a", "c"], masks)
    assert read_rle_csv(tmp_path / "t.csv")[0] == ["a", "b", "c"]
    from saltseg.core.errors import DataError

    with pytest.raises(DataError, match="only in"):
        write_rle_csv(tmp_path / "u.csv", ["b", "a", "c"], masks, order=["a", "b"])
    assert not (tmp_path / "u.csv").exists()
    with pytest.raises(DataError, match="twice"):
        write_rle_csv(tmp_path / "u.csv", ["a", "a", "c"], masks)


@pytest.mark.realdata
def test_eval_real_train_csv(tgs_data, tmp_path: Path, capsys) -> None:
    ids, truth = read_rle_csv(tgs_data / "train.csv")
    empty = np.zeros_like(truth)
    write_rle_csv(tmp_path / "empty.csv", ids, empty)
    assert main(["eval", str(tgs_data / "train.csv"), str(tmp_path / "empty.csv")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    expected = float(np.mean(~truth.reshape(len(truth), -1).any(axis=1)))
    assert last == f"score: {expected:.6f}"
