"""Probability maps on disk: one HDF5 file of ``uint8`` maps per prediction.

Layout of a file::

    ids     (N,)            tile ids, sorted, UTF-8 strings
    prob    (N, 101, 101)   uint8, probability * 255 rounded (chunked, lzf-compressed)
    crc     (N,)            uint32 CRC-32 of each row's bytes (checked on close and read)
    attrs   meta            JSON: family, stage, models, weights, flip_tta, ...
            rows_done       rows written so far (== N when complete)

A file is written to ``<name>.partial.h5`` in batches; when complete it is flushed,
fsynced, read back and checked (rows, shape, every row's CRC) and only then renamed, so a
crashed prediction resumes from its last written batch and a file under the final name is
never half-written or silently zero (a full disk: an error naming the path).
18,000 tiles take 184 MB as uint8 (0.4% quantisation step).
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from saltseg import TILE
from saltseg.core.atomic import ensure_folder, fsync_path, output_errors
from saltseg.core.errors import DataError, OutputError

SCALE = 255.0
CHUNK_ROWS = 64


def quantize(prob: np.ndarray) -> np.ndarray:
    """Float probabilities in [0, 1] -> uint8 (round to nearest of 256 levels)."""
    return np.clip(np.rint(np.asarray(prob, dtype=np.float32) * SCALE), 0, 255).astype(np.uint8)


def dequantize(q: np.ndarray) -> np.ndarray:
    """uint8 levels -> float32 probabilities."""
    return np.asarray(q, dtype=np.float32) / np.float32(SCALE)


def row_crcs(q: np.ndarray) -> np.ndarray:
    """CRC-32 of each map's bytes, ``(N,)`` uint32."""
    flat = np.ascontiguousarray(q, dtype=np.uint8).reshape(len(q), -1)
    return np.array([zlib.crc32(row.tobytes()) for row in flat], dtype=np.uint32)


def check_rows(path: Path, f: h5py.File, n: int, q: np.ndarray | None = None) -> None:
    """The file holds ``n`` complete rows whose CRCs match (files without CRCs: shape only);
    ``q``: its maps when already read."""
    done = int(f.attrs.get("rows_done", n))
    shape = f["prob"].shape
    if done != n or shape != (n, TILE, TILE):
        raise DataError(f"{path}: incomplete ({done} of {n} rows, maps {shape})")
    if "crc" not in f:
        return
    crc = f["crc"][()]
    for lo in range(0, n, 1024):
        rows = f["prob"][lo : lo + 1024] if q is None else q[lo : lo + 1024]
        bad = np.flatnonzero(row_crcs(rows) != crc[lo : lo + 1024])
        if bad.size:
            raise DataError(
                f"{path}: row {lo + int(bad[0])} does not match its checksum (a failed or "
                "interrupted write); delete the file and rerun"
            )


def partial_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".h5") + ".partial.h5")


@dataclass
class ProbMaps:
    """Probability maps of sorted ids, held as uint8 (``float`` converts)."""

    ids: list[str]
    q: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def float(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        return dequantize(self.q[lo:hi])

    def index(self) -> dict[str, int]:
        return {tid: i for i, tid in enumerate(self.ids)}

    def take(self, ids: Sequence[str]) -> ProbMaps:
        """The maps of ``ids`` (in that order); a missing id is an error naming it."""
        pos = self.index()
        missing = [i for i in ids if i not in pos]
        if missing:
            raise DataError(
                f"{self.meta.get('path', 'probabilities')}: {len(missing)} id(s) missing, "
                f"e.g. {missing[0]!r}"
            )
        return ProbMaps(list(ids), self.q[[pos[i] for i in ids]], dict(self.meta))


class ProbWriter:
    """Stream maps of known, sorted ids into ``path`` (resumable, renamed when complete)."""

    def __init__(self, path: Path, ids: Sequence[str], meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.ids = list(ids)
        if self.ids != sorted(self.ids) or len(set(self.ids)) != len(self.ids):
            raise ValueError("ids must be sorted and unique")
        self.meta = meta
        self.tmp = partial_path(self.path)
        ensure_folder(self.path.parent)
        with output_errors(self.path):
            self._file = self._open()

    def _open(self) -> h5py.File:
        meta_json = json.dumps(self.meta, sort_keys=True)
        if self.tmp.is_file():
            try:
                f = h5py.File(self.tmp, "r+")
                same = (
                    f.attrs.get("meta") == meta_json
                    and "crc" in f
                    and [s.decode() for s in f["ids"][()]] == self.ids
                )
                if same:
                    return f
                f.close()
            except (OSError, KeyError):
                pass
            self.tmp.unlink()
        f = h5py.File(self.tmp, "w")
        f.create_dataset("ids", data=np.array([i.encode() for i in self.ids], dtype="S"))
        rows = max(1, min(CHUNK_ROWS, len(self.ids)))
        f.create_dataset(
            "prob",
            shape=(len(self.ids), TILE, TILE),
            dtype=np.uint8,
            chunks=(rows, TILE, TILE),
            compression="lzf",
        )
        f.create_dataset("crc", shape=(len(self.ids),), dtype=np.uint32)
        f.attrs["meta"] = meta_json
        f.attrs["rows_done"] = 0
        f.flush()
        return f

    @property
    def rows_done(self) -> int:
        return int(self._file.attrs["rows_done"])

    def write(self, lo: int, prob: np.ndarray) -> None:
        """Write maps of rows ``lo:lo+len(prob)``; rows must come in order."""
        if lo != self.rows_done:
            raise ValueError(f"expected rows from {self.rows_done}, got {lo}")
        q = prob if prob.dtype == np.uint8 else quantize(prob)
        if q.shape[1:] != (TILE, TILE) or lo + len(q) > len(self.ids):
            raise ValueError(f"maps of shape {q.shape} do not fit rows {lo}:{len(self.ids)}")
        with output_errors(self.path):
            self._file["prob"][lo : lo + len(q)] = q
            self._file["crc"][lo : lo + len(q)] = row_crcs(q)
            self._file.attrs["rows_done"] = lo + len(q)
            self._file.flush()

    def close(self) -> Path:
        """Finish: every row written, flushed, fsynced and read back intact -> rename to the
        final path (a partial file that fails the check is removed: rerun recomputes it)."""
        done = self.rows_done
        with output_errors(self.path):
            self._file.close()
            if done != len(self.ids):
                raise ValueError(f"{self.tmp}: only {done} of {len(self.ids)} rows written")
            fsync_path(self.tmp)
            try:
                with h5py.File(self.tmp, "r") as f:
                    check_rows(self.tmp, f, len(self.ids))
            except (DataError, OSError, KeyError) as exc:
                self.tmp.unlink(missing_ok=True)
                raise OutputError(
                    f"{self.path}: not written, the finished file failed its check ({exc})"
                ) from None
            os.replace(self.tmp, self.path)
            fsync_path(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Leave the partial file for a later resume."""
        with contextlib.suppress(OSError, RuntimeError):
            self._file.close()


def write_probs(path: Path, ids: Sequence[str], prob: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write a whole array of maps (ids sorted) in one go."""
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    sorted_ids = [ids[i] for i in order]
    w = ProbWriter(path, sorted_ids, meta)
    w.write(0, np.asarray(prob)[order])
    return w.close()


def read_probs(path: str | os.PathLike[str]) -> ProbMaps:
    """Read a complete probability file (an error names a missing or partial file)."""
    path = Path(path)
    if not path.is_file():
        extra = " (a partial one exists: rerun)" if partial_path(path).is_file() else ""
        raise DataError(f"{path}: no such probability file{extra}")
    try:
        with h5py.File(path, "r") as f:
            ids = [s.decode() for s in f["ids"][()]]
            q = f["prob"][()]
            meta = json.loads(f.attrs.get("meta", "{}"))
            check_rows(path, f, len(ids), q)
    except (OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a saltseg probability file ({exc})") from None
    meta["path"] = str(path)
    return ProbMaps(ids, q, meta)


def iter_rows(n: int, batch: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, batch):
        yield lo, min(n, lo + batch)
