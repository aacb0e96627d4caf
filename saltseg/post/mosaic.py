"""Jigsaw mosaics of the TGS tiles and the vertical-mask post-processing.

The 101x101 TGS tiles were cut from larger seismic sections, so many of them fit next to
each other. This module finds those neighbours from the image edges alone, assembles the
tiles into mosaics with integer ``(row, col)`` positions, caches the result, and applies
the 1st-place solution's post-processing: in a mosaic column, tiles below a labelled
"vertical" mask copy its last row.

**Edge matching** (a Python re-implementation of the method of the original's
``Generate_Mosaic.R``, itself from V. Gaitan's "salt jigsaw puzzle" kernel):

- Each tile gets four edge descriptors, linear extrapolations one pixel beyond each border:
  right ``2*x[:, -1] - x[:, -2]``, left ``2*x[:, 0] - x[:, 1]``, bottom and top alike.
  A right descriptor of tile A is compared with the left descriptor of tile B (and bottom
  with top), as in the original.
- Each descriptor is centred and scaled to unit length, so the Euclidean distance of two
  descriptors is ``sqrt(2 - 2 * correlation)``. Descriptors of constant edges (black tiles,
  flat borders) carry no information and take part in no match.
- For every descriptor the two nearest opposite descriptors (excluding the tile itself)
  are found by an exact brute-force search in blocks of matrix products (one pass gives
  the best two in both directions). A pair A-B is accepted when it is *mutual* (B is A's
  nearest right neighbour and A is B's nearest left neighbour), *close* (distance below
  ``max_distance`` = 1.0, i.e. correlation above 0.5; the original's threshold 10 on
  vectors of norm 10 is the same bound) and *unambiguous* on both sides (nearest /
  second-nearest distance below ``max_ratio`` = 0.75, the original's compatibility
  ``1 - d1/d2 > 0.25``).

Deliberate differences from the original: the original standardises every descriptor
position over the whole tile set before the per-vector scaling (a data-set-dependent
transform; omitted, so a tile's matches do not depend on which other tiles are loaded);
it requires only that *some* tile picks A as its best left neighbour (here it must be B);
a tile that is its own best match is dropped there, excluded from the candidates here.

**Assembly**: accepted pairs form a graph; each connected component is laid out by a
best-first walk from its lowest id, placing the most confident (shortest) edges first. An
edge that would put a tile on an occupied cell, or a placed tile at a second position,
is dropped (counted as a conflict); a tile left unplaced starts a new mosaic. The
original built row and column strips and merged them from a seed, keeping the first
placement. Every order here follows sorted ids, never directory order.

**Post-processing** (the original's ``postprocessing`` in ``bes/ensemble.py``): in every
column of a mosaic, the topmost labelled tile whose mask is

- *vertical* (non-empty, every row equal to the last row, last row not full): every
  predicted tile below it in that column takes its last row repeated (rule
  ``vertical_down``), and if it sits at mosaic row >= 3, the predicted tile directly
  above takes its first row repeated (``vertical_up``);
- *half-vertical* (the bottom 50 rows non-empty and equal to the last row, last row not
  full): every predicted tile below it takes its last row repeated (``half_vertical_down``).

Only the topmost such labelled tile of a column counts, and tiles below are changed even
across gaps or other labelled tiles, as in the original. Labelled tiles are never changed.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saltseg import TILE
from saltseg.core.errors import DataError

ALGO_VERSION = 1
"""Bump when the matching or assembly changes: it invalidates cached mosaics."""

HALF_ROWS = 50
"""Bottom rows that must be equal for a "half-vertical" mask."""

UP_MIN_ROW = 3
"""A vertical tile must sit at mosaic row >= this for the upward rule."""

RULES = ("vertical_down", "half_vertical_down", "vertical_up")
"""Post-processing rules, in report order."""

# directions: (descriptor of the first tile, descriptor of the second, d_row, d_col)
_RIGHT = ("right", "left", 0, 1)
_DOWN = ("bottom", "top", 1, 0)


@dataclass(frozen=True)
class MatchParams:
    """Thresholds of the edge matching (see the module docstring)."""

    max_distance: float = 1.0
    max_ratio: float = 0.75
    block: int = 1024


# --------------------------------------------------------------------------- edges


def edge_descriptors(images: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Unit-length extrapolated edge descriptors of ``(N, H, W)`` tiles.

    Returns ``{side: (vectors float32 (N, L), valid bool (N,))}`` for the sides right,
    left, bottom and top; ``valid`` is False for constant edges (their vector is zero).
    """
    x = np.asarray(images)
    if x.ndim != 3 or x.shape[1] < 2 or x.shape[2] < 2:
        raise ValueError(f"images must be (N, H, W) with H, W >= 2, got {x.shape}")
    sides = {
        "right": (x[:, :, -1], x[:, :, -2]),
        "left": (x[:, :, 0], x[:, :, 1]),
        "bottom": (x[:, -1, :], x[:, -2, :]),
        "top": (x[:, 0, :], x[:, 1, :]),
    }
    return {
        side: _unit_rows(2 * edge.astype(np.float32) - inner.astype(np.float32))
        for side, (edge, inner) in sides.items()
    }


def _unit_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre each row and scale it to unit length; constant rows become zero, invalid."""
    valid = v.max(axis=1) > v.min(axis=1)
    centred = v - v.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    out = np.where(valid[:, None], centred / np.where(norm > 0, norm, 1), 0)
    return np.ascontiguousarray(out, dtype=np.float32), valid


# --------------------------------------------------------------------------- matching


@dataclass
class _Top2:
    """Running best and second-best similarity (and the best index) per item."""

    s1: np.ndarray
    s2: np.ndarray
    i1: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _Top2:
        return cls(np.full(n, -np.inf, np.float32), np.full(n, -np.inf, np.float32), np.full(n, -1))

    def merge(self, s1: np.ndarray, s2: np.ndarray, i1: np.ndarray) -> None:
        """Fold in another candidate set's best two; earlier candidates win exact ties."""
        second = np.maximum(np.minimum(self.s1, s1), np.maximum(self.s2, s2))
        better = s1 > self.s1
        self.i1 = np.where(better, i1, self.i1)
        self.s1 = np.maximum(self.s1, s1)
        self.s2 = second


def _best_two(sim: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best and second-best values and the best index along ``axis`` (``sim`` is restored)."""
    idx = sim.argmax(axis=axis)
    s1 = np.take_along_axis(sim, np.expand_dims(idx, axis), axis).squeeze(axis)
    if axis == 1:
        rows = np.arange(sim.shape[0])
        sim[rows, idx] = -np.inf
        s2 = sim.max(axis=1)
        sim[rows, idx] = s1
    else:
        cols = np.arange(sim.shape[1])
        sim[idx, cols] = -np.inf
        s2 = sim.max(axis=0)
        sim[idx, cols] = s1
    return s1, s2, idx


def _nearest_two(
    a: np.ndarray, a_ok: np.ndarray, b: np.ndarray, b_ok: np.ndarray, block: int
) -> tuple[_Top2, _Top2]:
    """Exact best-two search between descriptor sets ``a`` and ``b`` of the same tiles.

    Returns the best two ``b`` for every ``a`` and the best two ``a`` for every ``b`` by
    cosine similarity; a tile is never its own candidate, invalid descriptors never are.
    """
    n = len(a)
    rows_top, cols_top = _Top2.empty(n), _Top2.empty(n)
    b_bad = ~b_ok
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        sim = a[lo:hi] @ b.T
        sim[:, b_bad] = -np.inf
        sim[~a_ok[lo:hi]] = -np.inf
        sim[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf
        s1, s2, idx = _best_two(sim, axis=0)
        cols_top.merge(s1, s2, idx + lo)
        s1, s2, idx = _best_two(sim, axis=1)
        rows_top.s1[lo:hi], rows_top.s2[lo:hi], rows_top.i1[lo:hi] = s1, s2, idx
    return rows_top, cols_top


def _distance(sim: np.ndarray) -> np.ndarray:
    """Euclidean distance of unit vectors from their cosine similarity (-inf -> inf)."""
    with np.errstate(invalid="ignore"):
        d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sim.astype(np.float64)))
    return np.where(np.isfinite(sim), d, np.inf)


def _confident(top: _Top2, params: MatchParams) -> np.ndarray:
    """Items whose best candidate is close and clearly better than the second best."""
    d1, d2 = _distance(top.s1), _distance(top.s2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d2 > 0, d1 / d2, np.inf)
    return (top.i1 >= 0) & (d1 < params.max_distance) & (ratio < params.max_ratio)


def match_edges(
    first: tuple[np.ndarray, np.ndarray],
    second: tuple[np.ndarray, np.ndarray],
    params: MatchParams = MatchParams(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accepted pairs ``(i, j, distance)``: ``first[i]`` and ``second[j]`` are mutual,
    close and unambiguous nearest neighbours (e.g. i's right edge meets j's left edge)."""
    a, a_ok = first
    b, b_ok = second
    fwd, back = _nearest_two(a, a_ok, b, b_ok, max(1, params.block))
    i = np.flatnonzero(_confident(fwd, params))
    j = fwd.i1[i]
    keep = (back.i1[j] == i) & _confident(back, params)[j]
    i, j = i[keep], j[keep]
    return i, j, _distance(fwd.s1[i])


# --------------------------------------------------------------------------- assembly


@dataclass
class Mosaics:
    """Placement of sorted tile ids: ``mosaic`` -1 means the tile joined no mosaic.

    Mosaics are numbered 0.. by decreasing size (ties: lowest id first); ``row`` and
    ``col`` start at 0 in every mosaic (row grows downward, col to the right).
    """

    ids: list[str]
    mosaic: np.ndarray
    row: np.ndarray
    col: np.ndarray
    conflicts: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def sizes(self) -> np.ndarray:
        """Tiles per mosaic, indexed by mosaic number."""
        placed = self.mosaic[self.mosaic >= 0]
        return np.bincount(placed) if placed.size else np.zeros(0, np.int64)

    def grids(self) -> list[np.ndarray]:
        """One int array per mosaic: tile index (into ``ids``) per cell, -1 where empty."""
        out = []
        for m in range(len(self.sizes())):
            members = np.flatnonzero(self.mosaic == m)
            g = np.full((self.row[members].max() + 1, self.col[members].max() + 1), -1)
            g[self.row[members], self.col[members]] = members
            out.append(g)
        return out

    def summary(self) -> dict[str, int]:
        """Counts: tiles, mosaics (>= 2 tiles), tiles in them, largest mosaic, conflicts."""
        sizes = self.sizes()
        grids = self.grids()
        big = max(range(len(grids)), key=lambda k: sizes[k]) if grids else None
        return {
            "tiles": len(self.ids),
            "mosaics": len(sizes),
            "tiles_in_mosaics": int(sizes.sum()),
            "largest": int(sizes.max()) if sizes.size else 0,
            "largest_rows": int(grids[big].shape[0]) if big is not None else 0,
            "largest_cols": int(grids[big].shape[1]) if big is not None else 0,
            "conflicts": int(self.conflicts),
        }


def _neighbour_lists(
    n: int, pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]]
) -> list[list[tuple[float, int, int, int]]]:
    """Per tile: ``(distance, neighbour, d_row, d_col)`` for every accepted edge."""
    nbrs: list[list[tuple[float, int, int, int]]] = [[] for _ in range(n)]
    for i_arr, j_arr, d_arr, dr, dc in pairs:
        for i, j, d in zip(i_arr.tolist(), j_arr.tolist(), d_arr.tolist(), strict=True):
            nbrs[i].append((d, j, dr, dc))
            nbrs[j].append((d, i, -dr, -dc))
    return nbrs


def _grow(
    seed: int, nbrs: list[list[tuple[float, int, int, int]]], pos: dict[int, tuple[int, int]]
) -> tuple[list[int], int]:
    """Best-first placement from ``seed`` into ``pos``; returns the members and conflicts."""
    cells = {(0, 0): seed}
    pos[seed] = (0, 0)
    members, conflicts = [seed], 0
    heap = [(d, j, seed, dr, dc) for d, j, dr, dc in nbrs[seed] if j not in pos]
    heapq.heapify(heap)
    while heap:
        _, j, src, dr, dc = heapq.heappop(heap)
        r, c = pos[src]
        target = (r + dr, c + dc)
        if j in pos:
            conflicts += pos[j] != target
            continue
        if target in cells:
            conflicts += 1
            continue
        cells[target] = j
        pos[j] = target
        members.append(j)
        for d, k, dr2, dc2 in nbrs[j]:
            if k not in pos:
                heapq.heappush(heap, (d, k, j, dr2, dc2))
    return members, conflicts


def assemble(
    ids: Sequence[str],
    right: tuple[np.ndarray, np.ndarray, np.ndarray],
    down: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> Mosaics:
    """Lay out tiles from accepted right (i left of j) and down (i above j) pairs."""
    ids = list(ids)
    if ids != sorted(ids):
        raise ValueError("ids must be sorted")
    n = len(ids)
    nbrs = _neighbour_lists(n, [(*right, 0, 1), (*down, 1, 0)])
    pos: dict[int, tuple[int, int]] = {}
    groups: list[list[int]] = []
    conflicts = 0
    for seed in range(n):
        if seed in pos or not nbrs[seed]:
            continue
        members, bad = _grow(seed, nbrs, pos)
        conflicts += bad
        if len(members) > 1:
            groups.append(members)
    groups.sort(key=lambda g: (-len(g), min(g)))
    mosaic = np.full(n, -1, np.int32)
    row = np.zeros(n, np.int32)
    col = np.zeros(n, np.int32)
    for m, members in enumerate(groups):
        rc = np.array([pos[t] for t in members])
        mosaic[members] = m
        row[members] = rc[:, 0] - rc[:, 0].min()
        col[members] = rc[:, 1] - rc[:, 1].min()
    return Mosaics(ids, mosaic, row, col, conflicts=conflicts)


def build_mosaics(
    ids: Sequence[str],
    images: np.ndarray,
    params: MatchParams = MatchParams(),
) -> Mosaics:
    """Match the edges of tiles (``ids`` in any order, unique) and assemble mosaics."""
    ids = list(ids)
    if len(ids) != len(images):
        raise ValueError(f"{len(ids)} ids but {len(images)} images")
    if len(set(ids)) != len(ids):
        raise DataError("mosaics: duplicate tile id " + _first_duplicate(ids))
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    sorted_ids = [ids[k] for k in order]
    t0 = time.perf_counter()
    desc = edge_descriptors(np.asarray(images)[order])
    right = match_edges(desc[_RIGHT[0]], desc[_RIGHT[1]], params)
    down = match_edges(desc[_DOWN[0]], desc[_DOWN[1]], params)
    t1 = time.perf_counter()
    out = assemble(sorted_ids, right, down)
    out.meta = {
        "right_pairs": len(right[0]),
        "down_pairs": len(down[0]),
        "match_seconds": round(t1 - t0, 3),
        "assemble_seconds": round(time.perf_counter() - t1, 3),
    }
    return out


def _first_duplicate(ids: Sequence[str]) -> str:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            return repr(i)
        seen.add(i)
    return "?"


# --------------------------------------------------------------------------- cache


def tile_sources(
    data_dir: str | os.PathLike[str], test_images_dir: str | os.PathLike[str] | None = None
) -> tuple[list[str], list[Path]]:
    """Sorted ids and PNG paths of the train images (``train.csv``) and the test tiles.

    Test tiles come from ``test_images_dir`` (sorted file names) when given, else from
    the data folder's test ids. An id in both sets is an error naming it.
    """
    from saltseg.data.tiles import TGSDirectory, ids_from_folder

    data = TGSDirectory(data_dir)
    train_ids = data.train_ids()
    paths = {i: data.train_images_dir / f"{i}.png" for i in train_ids}
    if test_images_dir is None or Path(test_images_dir) == data.test_images_dir:
        test_dir, test_ids = data.test_images_dir, data.test_ids()
    else:
        test_dir = Path(test_images_dir)
        test_ids = ids_from_folder(test_dir)
    for i in test_ids:
        if i in paths:
            raise DataError(f"{test_dir}: id {i!r} is also a train id in {data.train_csv}")
        paths[i] = test_dir / f"{i}.png"
    ids = sorted(paths)
    return ids, [paths[i] for i in ids]


def cache_key(
    ids: Sequence[str],
    paths: Sequence[Path],
    params: MatchParams = MatchParams(),
) -> str:
    """Hash of the algorithm version, thresholds, and every id with its file size and mtime."""
    h = hashlib.sha256()
    spec = {"version": ALGO_VERSION, **asdict(params)}
    spec.pop("block")  # block size does not change the result
    h.update(json.dumps(spec, sort_keys=True).encode())
    for tid, p in sorted(zip(ids, paths, strict=True)):
        try:
            st = p.stat()
        except OSError:
            raise DataError(f"{p}: tile image not found (id {tid!r})") from None
        h.update(f"{tid}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def write_mosaics(path: str | os.PathLike[str], mosaics: Mosaics) -> None:
    """Write ``id,mosaic,row,col`` for every tile, atomically (one row per tile, sorted)."""
    import pandas as pd

    from saltseg.core.atomic import atomic_open

    df = pd.DataFrame(
        {"id": mosaics.ids, "mosaic": mosaics.mosaic, "row": mosaics.row, "col": mosaics.col}
    )
    with atomic_open(path, "w", newline="") as fh:
        df.to_csv(fh, index=False)


def read_mosaics(path: str | os.PathLike[str]) -> Mosaics:
    """Read a mosaics CSV written by :func:`write_mosaics` (errors name the file)."""
    from saltseg.data.tiles import read_id_csv

    p = Path(path)
    df = read_id_csv(p, ["id", "mosaic", "row", "col"]).sort_values("id", kind="stable")
    try:
        cols = [df[c].astype(np.int32).to_numpy() for c in ("mosaic", "row", "col")]
    except (ValueError, TypeError) as exc:
        raise DataError(f"{p}: non-integer mosaic/row/col ({exc})") from None
    out = Mosaics(df["id"].tolist(), *cols)
    _check_layout(out, p)
    return out


def _check_layout(m: Mosaics, path: Path) -> None:
    """Raise :class:`DataError` if two tiles share a cell or positions are negative."""
    placed = m.mosaic >= 0
    if (m.row[placed] < 0).any() or (m.col[placed] < 0).any() or (m.mosaic < -1).any():
        raise DataError(f"{path}: negative mosaic, row or col")
    if placed.any() and (m.sizes() < 2).any():
        raise DataError(f"{path}: mosaic numbers are not contiguous or a mosaic has one tile")
    cells = np.stack([m.mosaic[placed], m.row[placed], m.col[placed]], axis=1)
    if len(np.unique(cells, axis=0)) != len(cells):
        raise DataError(f"{path}: two tiles share a mosaic cell")


def load_or_build(
    data_dir: str | os.PathLike[str],
    test_images_dir: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str],
    params: MatchParams = MatchParams(),
    workers: int | None = None,
) -> tuple[Mosaics, Path, bool]:
    """Mosaics of the train + test tiles, from ``cache_dir/mosaics_<key>.csv`` when valid.

    Returns ``(mosaics, cache_file, reused)``. A missing, unreadable or mismatched cache
    file is rebuilt from the images and written atomically.
    """
    from saltseg.data.tiles import read_images

    ids, paths = tile_sources(data_dir, test_images_dir)
    path = Path(cache_dir) / f"mosaics_{cache_key(ids, paths, params)}.csv"
    if path.is_file():
        try:
            cached = read_mosaics(path)
        except DataError:
            cached = None
        if cached is not None and cached.ids == ids:
            return cached, path, True
    images = read_images(paths, TILE, workers)
    mosaics = build_mosaics(ids, images, params)
    write_mosaics(path, mosaics)
    return mosaics, path, False


def read_original_mosaics(folder: str | os.PathLike[str], ids: Sequence[str]) -> Mosaics:
    """Mosaics from a layout in the original's format: a folder of CSV files (the
    original's ``mos_numpy_v2/``, made by its R script), one per mosaic, each a grid of
    tile ids without a header (rows top to bottom, columns left to right; empty or ``NA``
    cells are holes). Files are read in sorted name order. Ids not among ``ids`` (tiles
    this run does not have) are left out and counted in ``meta``; a tile in two cells is
    an error naming both places.
    """
    import csv

    folder = Path(folder)
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not files:
        raise DataError(f"{folder}: no mosaic CSV files (want the original's mos_numpy_v2/)")
    index = {tid: i for i, tid in enumerate(ids)}
    mosaic = np.full(len(ids), -1, dtype=np.int64)
    row = np.zeros(len(ids), dtype=np.int64)
    col = np.zeros(len(ids), dtype=np.int64)
    where: dict[str, str] = {}
    groups: list[list[tuple[int, int, int]]] = []
    unknown = 0
    for f in files:
        try:
            with f.open(newline="", encoding="utf-8") as fh:
                grid = [[c.strip() for c in line] for line in csv.reader(fh)]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{f}: not a readable mosaic CSV ({exc})") from None
        cells = []
        for r, line in enumerate(grid):
            for c, tid in enumerate(line):
                if tid in ("", "NA"):
                    continue
                if tid in where:
                    raise DataError(
                        f"{f}: row {r + 1}, column {c + 1}: tile {tid!r} is also at {where[tid]}"
                    )
                where[tid] = f"{f.name} row {r + 1}, column {c + 1}"
                if tid not in index:
                    unknown += 1
                    continue
                cells.append((index[tid], r, c))
        if len(cells) >= 2:
            groups.append(cells)
    groups.sort(key=lambda g: (-len(g), min(ids[i] for i, _, _ in g)))
    for m, cells in enumerate(groups):
        r0 = min(r for _, r, _ in cells)
        c0 = min(c for _, _, c in cells)
        for i, r, c in cells:
            mosaic[i], row[i], col[i] = m, r - r0, c - c0
    meta = {"layout": str(folder), "files": len(files), "unknown_ids": unknown}
    return Mosaics(list(ids), mosaic, row, col, meta=meta)


# --------------------------------------------------------------------------- post-processing


def mask_kind(mask: np.ndarray) -> str | None:
    """``"vertical"``, ``"half_vertical"`` or ``None`` for a bool ``(H, W)`` mask."""
    m = np.asarray(mask, dtype=bool)
    last = m[-1]
    if last.all():
        return None
    if m.any() and (m == last).all():
        return "vertical"
    bottom = m[-HALF_ROWS:]
    if bottom.any() and (bottom == last).all():
        return "half_vertical"
    return None


@dataclass
class PostprocessReport:
    """Per rule: tiles assigned a new mask, tiles whose mask actually changed, and the
    labelled tiles that triggered it."""

    applied: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    changed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    triggers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())

    def lines(self) -> list[str]:
        return [
            f"{rule}: {self.changed[rule]} tile(s) changed ({self.applied[rule]} assigned, "
            f"{self.triggers[rule]} labelled trigger tile(s))"
            for rule in RULES
        ]


def _column_targets(
    column: np.ndarray, ids: Sequence[str], known_kind: Mapping[str, str | None]
) -> list[tuple[str, int, np.ndarray]]:
    """``(rule, trigger index, target indices)`` for one mosaic column (top to bottom)."""
    for r, t in enumerate(column.tolist()):
        kind = known_kind.get(ids[t]) if t >= 0 else None
        if kind is None:
            continue
        below = column[r + 1 :]
        out = [("vertical_down" if kind == "vertical" else "half_vertical_down", t, below)]
        if kind == "vertical" and r >= UP_MIN_ROW:
            out.append(("vertical_up", t, column[r - 1 : r]))
        return out
    return []


def postprocess(
    mosaics: Mosaics,
    pred_ids: Sequence[str],
    pred_masks: np.ndarray,
    known_masks: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, PostprocessReport]:
    """Apply the vertical / half-vertical rules to the predicted tiles.

    ``pred_masks`` is bool ``(N, H, W)`` in the order of ``pred_ids``; ``known_masks``
    maps labelled ids to their bool masks (leave black tiles out, as the original did).
    A tile in ``known_masks`` is never changed. Returns a new array and the report.
    """
    pred_ids = list(pred_ids)
    masks = np.asarray(pred_masks, dtype=bool)
    if masks.ndim != 3 or len(masks) != len(pred_ids):
        raise ValueError(f"{len(pred_ids)} ids but masks of shape {masks.shape}")
    out = masks.copy()
    report = PostprocessReport()
    where = {tid: k for k, tid in enumerate(pred_ids) if tid not in known_masks}
    kind = {tid: mask_kind(known_masks[tid]) for tid in mosaics.ids if tid in known_masks}
    for grid in mosaics.grids():
        for c in range(grid.shape[1]):
            for rule, trigger, targets in _column_targets(grid[:, c], mosaics.ids, kind):
                src = np.asarray(known_masks[mosaics.ids[trigger]], dtype=bool)
                new = np.broadcast_to(src[0] if rule == "vertical_up" else src[-1], src.shape)
                _assign(out, where, [mosaics.ids[t] for t in targets if t >= 0], new, rule, report)
                report.triggers[rule] += 1
    return out, report


def _assign(
    out: np.ndarray,
    where: Mapping[str, int],
    targets: Sequence[str],
    new: np.ndarray,
    rule: str,
    report: PostprocessReport,
) -> None:
    for tid in targets:
        k = where.get(tid)
        if k is None:
            continue
        report.applied[rule] += 1
        if not np.array_equal(out[k], new):
            report.changed[rule] += 1
            out[k] = new


def known_train_masks(
    data_dir: str | os.PathLike[str], exclude: Sequence[str] = (), workers: int | None = None
) -> dict[str, np.ndarray]:
    """Train masks by id, without black tiles (as the original) and ``exclude`` ids."""
    from saltseg.data.tiles import TGSDirectory

    train = TGSDirectory(data_dir).load_train(verify_rle=False, workers=workers)
    skip = set(exclude)
    return {
        tid: train.masks[k]
        for k, tid in enumerate(train.ids)
        if not train.black[k] and tid not in skip
    }


def apply_to_csv(
    pred_csv: str | os.PathLike[str],
    out_csv: str | os.PathLike[str],
    mosaics: Mosaics,
    known_masks: Mapping[str, np.ndarray],
) -> PostprocessReport:
    """Post-process an RLE CSV (``id,rle_mask``) into ``out_csv``, keeping its row order."""
    from saltseg.data.submission import read_rle_csv, write_rle_csv

    ids, masks = read_rle_csv(pred_csv)
    new, report = postprocess(mosaics, ids, masks, known_masks)
    write_rle_csv(out_csv, ids, new, order=ids)
    return report


# --------------------------------------------------------------------------- CLI


def _paths_from_args(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """Data folder, test images folder and cache folder from the options, else the settings.

    With ``--data`` and no ``--test-images``, the test tiles are ``DATA/test/images``.
    """
    settings = None
    if not args.data or not args.cache:
        from saltseg.config.settings import load_settings

        settings = load_settings(args.settings)
    data = Path(args.data) if args.data else settings.data_dir
    if args.test_images:
        test = Path(args.test_images)
    else:
        test = data / "test" / "images" if args.data else settings.test_images_dir
    cache = Path(args.cache) if args.cache else settings.predictions_dir / "mosaics"
    return data, test, cache


def _params(args: argparse.Namespace) -> MatchParams:
    return MatchParams(max_distance=args.max_distance, max_ratio=args.max_ratio)


def _load(args: argparse.Namespace) -> tuple[Mosaics, Path]:
    data, test, cache = _paths_from_args(args)
    t0 = time.perf_counter()
    if args.layout:
        ids, _ = tile_sources(data, test)
        mosaics = read_original_mosaics(args.layout, ids)
        print(f"mosaics read in {time.perf_counter() - t0:.1f} s: {args.layout}", flush=True)
        return mosaics, data
    mosaics, path, reused = load_or_build(data, test, cache, _params(args))
    how = "reused" if reused else "built"
    print(f"mosaics {how} in {time.perf_counter() - t0:.1f} s: {path}", flush=True)
    return mosaics, data


def cmd_build(args: argparse.Namespace) -> int:
    """Build (or reuse) the mosaics and print their summary."""
    mosaics, _ = _load(args)
    s = mosaics.summary()
    print(f"tiles: {s['tiles']}")
    print(f"mosaics (>= 2 tiles): {s['mosaics']}")
    share = s["tiles_in_mosaics"] / max(1, s["tiles"])
    print(f"tiles placed in mosaics: {s['tiles_in_mosaics']} ({share:.1%})")
    print(f"largest mosaic: {s['largest']} tiles ({s['largest_rows']} x {s['largest_cols']} cells)")
    if "layout" in mosaics.meta:
        print(f"ids of the layout that are not among the tiles: {mosaics.meta['unknown_ids']}")
    elif mosaics.meta:  # freshly built (a cache file holds only the layout)
        meta = mosaics.meta
        print(f"edges accepted: {meta['right_pairs']} right, {meta['down_pairs']} down")
        print(f"conflicting edges dropped: {s['conflicts']}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    """Post-process a prediction RLE CSV with the mosaics."""
    mosaics, data = _load(args)
    known = known_train_masks(data)
    report = apply_to_csv(args.pred_csv, args.out, mosaics, known)
    for line in report.lines():
        print(line)
    print(f"changed: {report.total_changed} tile(s); wrote {args.out}")
    return 0


def add_mosaic_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``saltseg mosaic build|apply`` on an ``argparse`` sub-parsers object."""
    parser = subparsers.add_parser(
        "mosaic",
        help="assemble jigsaw mosaics and apply the vertical-mask post-processing",
        description="Assemble the train + test tiles into mosaics by matching tile edges "
        "(cached), or post-process a prediction CSV with them.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="build or reuse the mosaics and summarise them")
    build.set_defaults(func=cmd_build)
    apply = actions.add_parser("apply", help="post-process a prediction RLE CSV")
    apply.add_argument("pred_csv", help="predictions, id,rle_mask")
    apply.add_argument("--out", required=True, help="output RLE CSV (same row order)")
    apply.set_defaults(func=cmd_apply)
    for p in (build, apply):
        p.add_argument("--data", help="TGS data folder (default: DATA_DIR of the settings)")
        p.add_argument(
            "--test-images", help="test tiles (default: NEW_TEST_IMAGES_DATA or DATA/test/images)"
        )
        p.add_argument("--cache", help="cache folder (default: PREDICTIONS_DIR/mosaics)")
        p.add_argument(
            "--layout",
            metavar="DIR",
            help="use a mosaic layout in the original's format (a folder of grid CSVs, e.g. "
            "its data/mos_numpy_v2) instead of matching edges",
        )
        p.add_argument("--max-distance", type=float, default=MatchParams.max_distance)
        p.add_argument("--max-ratio", type=float, default=MatchParams.max_ratio)
    return parser
