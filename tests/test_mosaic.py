"""Jigsaw mosaics: edge matching and assembly on synthetic fields, cache, post-processing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from saltseg import TILE
from saltseg.cli.main import build_parser
from saltseg.core import rle
from saltseg.core.errors import DataError
from saltseg.data.submission import read_rle_csv, write_rle_csv
from saltseg.post.mosaic import (
    MatchParams,
    Mosaics,
    apply_to_csv,
    assemble,
    build_mosaics,
    edge_descriptors,
    load_or_build,
    mask_kind,
    postprocess,
    read_mosaics,
)

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def smooth_field(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A textured smooth uint8 image of ``rows x cols`` tiles."""
    shape = (rows * TILE, cols * TILE)
    fine = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 2.0)
    coarse = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 9.0)
    f = fine / fine.std() + 0.5 * coarse / coarse.std()
    f = (f - f.min()) / (f.max() - f.min())
    return np.round(20 + 215 * f).astype(np.uint8)


def cut(image: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """Tiles of an image by (row, col)."""
    rows, cols = image.shape[0] // TILE, image.shape[1] // TILE
    return {
        (r, c): image[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE].copy()
        for r in range(rows)
        for c in range(cols)
    }


def random_ids(rng: np.random.Generator, n: int) -> list[str]:
    return [f"{x:010x}" for x in rng.choice(16**9, size=n, replace=False)]


def layout(m: Mosaics, tid: str) -> tuple[int, int, int]:
    k = m.ids.index(tid)
    return int(m.mosaic[k]), int(m.row[k]), int(m.col[k])


def grid_mosaics(columns: dict[str, list[str | None]], extra: tuple[str, ...] = ()) -> Mosaics:
    """One mosaic from named columns (top to bottom, None = empty cell) plus singletons."""
    cells = {
        tid: (r, c)
        for c, col in enumerate(columns.values())
        for r, tid in enumerate(col)
        if tid is not None
    }
    ids = sorted([*cells, *extra])
    mosaic = np.array([0 if i in cells else -1 for i in ids], np.int32)
    row = np.array([cells.get(i, (0, 0))[0] for i in ids], np.int32)
    col = np.array([cells.get(i, (0, 0))[1] for i in ids], np.int32)
    return Mosaics(ids, mosaic, row, col)


def vertical_mask(lo: int = 10, hi: int = 40) -> np.ndarray:
    m = np.zeros((TILE, TILE), bool)
    m[:, lo:hi] = True
    return m


def half_vertical_mask() -> np.ndarray:
    m = np.zeros((TILE, TILE), bool)
    m[40:, 20:50] = True
    m[5:20, 5:30] = True
    return m


# --------------------------------------------------------------------------- assembly


@pytest.fixture(scope="module")
def puzzle() -> dict:
    """Two fields (3x4 and 2x3 tiles), two black tiles, one noise tile; shuffled ids."""
    rng = np.random.default_rng(5)
    pieces: dict[tuple[int, int, int], np.ndarray] = {}
    for f, (r, c) in enumerate([(3, 4), (2, 3)]):
        for (i, j), tile in cut(smooth_field(rng, r, c)).items():
            pieces[(f, i, j)] = tile
    pieces[(-1, 0, 0)] = np.zeros((TILE, TILE), np.uint8)
    pieces[(-2, 0, 0)] = np.full((TILE, TILE), 97, np.uint8)
    pieces[(-3, 0, 0)] = rng.integers(0, 256, (TILE, TILE), dtype=np.uint8)
    keys = list(pieces)
    ids = random_ids(rng, len(keys))
    order = rng.permutation(len(keys))
    ids_in = [ids[k] for k in order]
    images = np.stack([pieces[keys[k]] for k in order])
    truth = {ids[k]: keys[k] for k in range(len(keys))}
    return {"ids": ids_in, "images": images, "truth": truth}


def test_assembly_recovers_layout(puzzle) -> None:
    m = build_mosaics(puzzle["ids"], puzzle["images"])
    assert m.ids == sorted(puzzle["ids"])
    assert sorted(m.sizes().tolist()) == [6, 12]
    assert m.conflicts == 0
    by_field: dict[int, set[int]] = {}
    for tid, (f, i, j) in puzzle["truth"].items():
        mos, r, c = layout(m, tid)
        if f < 0:
            assert mos == -1, "black and noise tiles must stay alone"
            continue
        by_field.setdefault(f, set()).add(mos)
        assert (r, c) == (i, j)  # each field's top-left tile is at (0, 0)
    assert by_field[0] != by_field[1] and all(len(s) == 1 for s in by_field.values())
    assert m.summary()["largest"] == 12 and m.summary()["largest_cols"] == 4


def test_block_size_and_input_order_do_not_matter(puzzle) -> None:
    a = build_mosaics(puzzle["ids"], puzzle["images"])
    rev = slice(None, None, -1)
    b = build_mosaics(puzzle["ids"][rev], puzzle["images"][rev], MatchParams(block=5))
    assert a.ids == b.ids
    for x, y in ((a.mosaic, b.mosaic), (a.row, b.row), (a.col, b.col)):
        np.testing.assert_array_equal(x, y)


def test_constant_edges_never_match() -> None:
    tiles = np.zeros((4, TILE, TILE), np.uint8)
    tiles[1] = 200
    tiles[2, :, :] = np.arange(TILE, dtype=np.uint8)[None, :]  # constant columns only
    tiles[3, :, :] = np.arange(TILE, dtype=np.uint8)[:, None]  # constant rows only
    desc = edge_descriptors(tiles)
    assert not desc["right"][1][:2].any() and not desc["top"][1][:2].any()
    assert not desc["left"][1][2] and desc["top"][1][2]
    assert not desc["top"][1][3] and desc["left"][1][3]
    m = build_mosaics(["a", "b", "c", "d"], tiles)
    assert (m.mosaic == -1).all()


def test_ambiguous_duplicate_is_not_matched() -> None:
    rng = np.random.default_rng(1)
    t = cut(smooth_field(rng, 1, 3))
    images = np.stack([t[(0, 0)], t[(0, 1)], t[(0, 2)], t[(0, 1)]])
    m = build_mosaics(["a", "b", "c", "d"], images)
    assert (m.mosaic == -1).all(), "two identical candidates: no confident match"
    m = build_mosaics(["a", "b", "c"], images[:3])
    assert m.sizes().tolist() == [3]


def test_assemble_drops_conflicting_edges() -> None:
    ids = ["t0", "t1", "t2", "t3", "t4"]
    right = (np.array([0, 2]), np.array([1, 3]), np.array([0.1, 0.25]))
    down = (np.array([0, 1]), np.array([2, 4]), np.array([0.2, 0.5]))
    m = assemble(ids, right, down)
    assert [layout(m, t) for t in ids] == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (-1, 0, 0)]
    assert m.conflicts == 1  # t4 below t1 would land on t3's cell: the weaker edge loses


# --------------------------------------------------------------------------- cache and CLI


def write_puzzle_dir(root: Path, seed: int = 3) -> dict[str, tuple[int, int]]:
    """A TGS folder from one 3x4 field: row 0 is labelled (col 0 vertical), the rest test."""
    rng = np.random.default_rng(seed)
    tiles = cut(smooth_field(rng, 3, 4))
    ids = random_ids(rng, len(tiles))
    for d in ("train/images", "train/masks", "test/images"):
        (root / d).mkdir(parents=True, exist_ok=True)
    where: dict[str, tuple[int, int]] = {}
    rows = []
    for tid, (pos, img) in zip(ids, tiles.items(), strict=True):
        where[tid] = pos
        if pos[0] == 0:
            mask = vertical_mask() if pos[1] == 0 else np.zeros((TILE, TILE), bool)
            cv2.imwrite(str(root / "train/images" / f"{tid}.png"), cv2.merge([img] * 3))
            cv2.imwrite(str(root / "train/masks" / f"{tid}.png"), mask.astype(np.uint8) * 255)
            rows.append((tid, rle.encode(mask)))
        else:
            cv2.imwrite(str(root / "test/images" / f"{tid}.png"), img)
    pd.DataFrame(rows, columns=["id", "rle_mask"]).to_csv(root / "train.csv", index=False)
    return where


def test_cache_reused_and_invalidated(tmp_path: Path) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    where = write_puzzle_dir(data)
    m1, path1, reused = load_or_build(data, None, cache)
    assert not reused and path1.is_file() and path1.parent == cache
    assert m1.sizes().tolist() == [12]
    m2, path2, reused = load_or_build(data, None, cache)
    assert reused and path2 == path1 and m2.ids == m1.ids
    np.testing.assert_array_equal(m2.row, m1.row)
    # A damaged cache file is rebuilt under the same name.
    path1.write_text("id,mosaic\nzz,1\n")
    _, path3, reused = load_or_build(data, None, cache)
    assert not reused and path3 == path1 and read_mosaics(path3).ids == m1.ids
    # Changing a tile changes the key.
    victim = next(t for t, pos in where.items() if pos == (1, 1))
    png = data / "test/images" / f"{victim}.png"
    cv2.imwrite(str(png), np.full((TILE, TILE), 9, np.uint8))
    os.utime(png, ns=(1, 1))
    m4, path4, reused = load_or_build(data, None, cache)
    assert not reused and path4 != path1
    assert m4.mosaic[m4.ids.index(victim)] == -1
    # Other thresholds give another cache file.
    _, path5, reused = load_or_build(data, None, cache, MatchParams(max_ratio=0.7))
    assert not reused and path5 not in (path1, path4)


def run_cli(argv: list[str]) -> int:
    """Run a ``saltseg`` command through the real parser (``cli.main`` minus its start-up)."""
    args = build_parser().parse_args(argv)
    return args.func(args)


def test_cli_build_and_apply(tmp_path: Path, capsys) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    where = write_puzzle_dir(data)
    assert run_cli(["mosaic", "build", "--data", str(data), "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "mosaics (>= 2 tiles): 1" in out and "tiles placed in mosaics: 12" in out
    assert "largest mosaic: 12 tiles (3 x 4 cells)" in out
    test_ids = sorted(t for t, pos in where.items() if pos[0] > 0)[::-1]
    pred_csv, out_csv = tmp_path / "pred.csv", tmp_path / "post.csv"
    write_rle_csv(pred_csv, test_ids, np.zeros((len(test_ids), TILE, TILE), bool), order=test_ids)
    args = ["mosaic", "apply", str(pred_csv), "--out", str(out_csv)]
    assert run_cli([*args, "--data", str(data), "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "mosaics reused" in out and "vertical_down: 2 tile(s) changed" in out
    ids, masks = read_rle_csv(out_csv)
    assert ids == test_ids
    for tid, mask in zip(ids, masks, strict=True):
        expected = vertical_mask() if where[tid][1] == 0 else np.zeros((TILE, TILE), bool)
        np.testing.assert_array_equal(mask, expected)


def test_mosaic_command_does_not_import_keras(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_puzzle_dir(data)
    argv = ["mosaic", "build", "--data", str(data), "--cache", str(tmp_path)]
    code = (
        "import sys\nfrom saltseg.cli.main import build_parser\n"
        f"args = build_parser().parse_args({argv!r})\nrc = args.func(args)\n"
        "print(rc, 'keras' in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert res.stdout.strip().splitlines()[-1] == "0 False False"


def test_cli_missing_data_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope"):
        run_cli(["mosaic", "build", "--data", str(tmp_path / "nope"), "--cache", str(tmp_path)])


# --------------------------------------------------------------------------- post-processing


def test_mask_kind() -> None:
    assert mask_kind(vertical_mask()) == "vertical"
    assert mask_kind(half_vertical_mask()) == "half_vertical"
    assert mask_kind(np.zeros((TILE, TILE), bool)) is None
    assert mask_kind(np.ones((TILE, TILE), bool)) is None  # last row full
    m = vertical_mask()
    m[60, 70] = True  # breaks the bottom 50 rows
    assert mask_kind(m) is None
    m = half_vertical_mask()
    m[-1, :] = True  # full last row
    assert mask_kind(m) is None


def _run(columns, known, pred_ids, extra=()):
    m = grid_mosaics(columns, extra)
    pred = np.zeros((len(pred_ids), TILE, TILE), bool)
    pred[:, 0, 0] = True  # every prediction differs from any rule's output
    new, report = postprocess(m, pred_ids, pred, known)
    return dict(zip(pred_ids, new, strict=True)), report


def test_vertical_rules_down_and_up() -> None:
    v = vertical_mask()  # every row equal: the up and down rules give the same mask
    known = {"k3": v, "k5": np.zeros((TILE, TILE), bool)}
    pred_ids = ["p0", "p1", "p2", "p4", "p6", "q"]
    col = ["p0", "p1", "p2", "k3", "p4", "k5", "p6"]
    new, report = _run({"a": col}, known, pred_ids, extra=("q",))
    for tid in ("p4", "p6"):
        np.testing.assert_array_equal(new[tid], v)
    np.testing.assert_array_equal(new["p2"], v)
    for tid in ("p0", "p1", "q"):
        assert new[tid].sum() == 1 and new[tid][0, 0], f"{tid} must stay as predicted"
    assert report.changed == {"vertical_down": 2, "half_vertical_down": 0, "vertical_up": 1}
    assert report.triggers["vertical_down"] == 1


def test_up_rule_needs_mosaic_row_3() -> None:
    v = vertical_mask()
    new, report = _run({"a": ["p0", "p1", "k2", "p3"]}, {"k2": v}, ["p0", "p1", "p3"])
    assert report.changed["vertical_up"] == 0 and report.changed["vertical_down"] == 1
    assert new["p1"].sum() == 1


def test_half_vertical_skips_gaps_and_only_topmost_trigger_counts() -> None:
    h = half_vertical_mask()
    v = vertical_mask(60, 90)
    known = {"h0": h, "v2": v, "v9": vertical_mask()}
    columns = {"a": ["h0", "p1", None, "v2", "p4"], "b": [None, "x1", "x2", "x3"]}
    pred_ids = ["p1", "p4", "x1", "x2", "x3"]
    new, report = _run(columns, known, pred_ids, extra=("v9",))
    last_row = np.broadcast_to(h[-1], h.shape)
    np.testing.assert_array_equal(new["p1"], last_row)
    np.testing.assert_array_equal(new["p4"], last_row)  # below v2 but h0 is above it
    assert report.changed == {"vertical_down": 0, "half_vertical_down": 2, "vertical_up": 0}
    for tid in ("x1", "x2", "x3"):
        assert new[tid].sum() == 1


def test_known_tiles_are_never_changed() -> None:
    v = vertical_mask()
    other = np.zeros((TILE, TILE), bool)
    other[3:9, 3:9] = True
    known = {"k0": v, "k1": other}
    m = grid_mosaics({"a": ["k0", "k1", "p2"]})
    pred_ids = ["k1", "p2"]  # a labelled tile also in the predictions
    pred = np.zeros((2, TILE, TILE), bool)
    new, report = postprocess(m, pred_ids, pred, known)
    assert not new[0].any()
    np.testing.assert_array_equal(new[1], v)
    assert report.applied["vertical_down"] == 1
    assert known["k1"] is other and other.sum() == 36
    # Already equal: assigned but not counted as changed.
    _, report = postprocess(m, ["p2"], v[None], known)
    assert report.applied["vertical_down"] == 1 and report.changed["vertical_down"] == 0


def test_apply_to_csv_keeps_ids_and_order(tmp_path: Path) -> None:
    v = vertical_mask()
    m = grid_mosaics({"a": ["k0", "t2", "t1"], "b": ["t3", "t0", None]}, extra=("t4",))
    order = ["t3", "t0", "t4", "t2", "t1"]
    rng = np.random.default_rng(0)
    masks = rng.random((len(order), TILE, TILE)) > 0.7
    pred_csv, out_csv = tmp_path / "pred.csv", tmp_path / "out.csv"
    write_rle_csv(pred_csv, order, masks, order=order)
    report = apply_to_csv(pred_csv, out_csv, m, {"k0": v})
    ids, new = read_rle_csv(out_csv)
    assert ids == order
    assert report.changed["vertical_down"] == 2
    for k, tid in enumerate(order):
        expected = v if tid in ("t1", "t2") else masks[k]
        np.testing.assert_array_equal(new[k], expected)
