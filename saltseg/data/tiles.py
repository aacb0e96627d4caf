"""Reading Kaggle TGS Salt directories into arrays.

Layout::

    DATA_DIR/train.csv               id,rle_mask     (labelled ids)
    DATA_DIR/depths.csv              id,z            (all ids)
    DATA_DIR/train/images/<id>.png   8-bit, 1 or 3 identical channels (16-bit,
                                     alpha, colour: converted, with a warning)
    DATA_DIR/train/masks/<id>.png    0/255 8-bit or 0/65535 16-bit (another 0/v
                                     pair: read as v = salt, with a warning)
    DATA_DIR/test/images/<id>.png
    DATA_DIR/sample_submission.csv   id,rle_mask     (optional; test ids in Kaggle order)

Ids come from the CSVs (sorted) or from sorted file names, never from directory-listing
order. Every problem raises :class:`DataError` naming the file or id.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from saltseg import TILE
from saltseg.core import rle as rle_mod
from saltseg.core.errors import DataError, DataWarning

cv2.setNumThreads(1)

ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
"""Ids that are file names and round-trip through an RLE CSV (ASCII, no space or comma)."""


def default_workers() -> int:
    """Decode threads: one per available core, at least 2 (OpenCV releases the GIL)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(2, n)


# --------------------------------------------------------------------------- PNG decoding


def _imread(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    buf = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise DataError(f"{path}: unreadable or corrupt image file")
    return img


def _check_size(img: np.ndarray, path: Path, size: int) -> None:
    if img.shape[0] != size or img.shape[1] != size:
        raise DataError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, expected {size}x{size}")


_warned: set[str] = set()
_warn_lock = threading.Lock()


def warn_once(kind: str, message: str) -> None:
    """A :class:`DataWarning` for the first file of each ``kind`` (later ones are not
    reported, so 18,000 16-bit tiles give one line)."""
    with _warn_lock:
        if kind in _warned:
            return
        _warned.add(kind)
    warnings.warn(f"{message} (further files like this are not reported)", DataWarning, 2)


def to_gray_uint8(img: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
    """Reduce a decoded PNG (gray, gray+alpha, BGR, BGRA; 8- or 16-bit) to uint8 gray; an
    alpha channel, colour or 16 bits give a warning saying what was done."""
    if img.ndim == 3:
        if img.shape[2] in (2, 4):
            warn_once("alpha", f"{path}: tile has an alpha channel; it is ignored")
        if img.shape[2] == 2:  # gray + alpha
            img = img[:, :, 0]
        elif img.shape[2] in (3, 4):
            bgr = img[:, :, :3]
            first = bgr[:, :, 0]
            if (bgr[:, :, 1] == first).all() and (bgr[:, :, 2] == first).all():
                img = first
            else:
                warn_once("colour", f"{path}: colour tile; converted to grey (luminance)")
                img = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2GRAY)
        else:
            raise DataError(f"{path}: unsupported channel count {img.shape[2]}")
    elif img.ndim != 2:
        raise DataError(f"{path}: unsupported image array shape {img.shape}")
    if img.dtype == np.uint16:
        warn_once("16bit", f"{path}: 16-bit tile; reduced to 8 bits (its high byte)")
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(f"{path}: unsupported pixel type {img.dtype}")
    return np.ascontiguousarray(img)


def read_image(path: str | os.PathLike[str], size: int = TILE) -> np.ndarray:
    """Read one tile as uint8 ``(size, size)``."""
    p = Path(path)
    img = _imread(p)
    _check_size(img, p, size)
    return to_gray_uint8(img, p)


def read_mask(path: str | os.PathLike[str], size: int = TILE) -> np.ndarray:
    """Read one mask PNG as bool ``(size, size)``; it must hold at most two values, 0 and max."""
    p = Path(path)
    img = _imread(p)
    _check_size(img, p, size)
    if img.ndim == 3:
        first = img[:, :, 0]
        if any((img[:, :, c] != first).any() for c in range(1, min(img.shape[2], 3))):
            raise DataError(f"{p}: mask channels differ; expected a single-channel binary mask")
        img = first
    values = np.unique(img)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6]) + (" ..." if values.size > 6 else "")
        raise DataError(f"{p}: mask is not binary (values {shown}); expected 0 and one other value")
    top = int(values[-1]) if values.size else 0
    if top not in (0, 1, np.iinfo(img.dtype).max):
        what = "every pixel is" if values.size == 1 else "its values are 0 and"
        warn_once(
            "mask-value",
            f"{p}: mask {what} {top} (not 0 or {np.iinfo(img.dtype).max}); read as salt where "
            "the value is not 0",
        )
    return img > 0


def _parallel(fn, items: Sequence, workers: int | None) -> list:
    workers = workers or default_workers()
    if workers <= 1 or len(items) < 64:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items, chunksize=max(1, len(items) // (workers * 8))))


def read_images(
    paths: Sequence[str | os.PathLike[str]], size: int = TILE, workers: int | None = None
) -> np.ndarray:
    """Decode many tiles in parallel into uint8 ``(N, size, size)``."""
    out = np.empty((len(paths), size, size), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = read_image(paths[i], size)

    _parallel(work, range(len(paths)), workers)
    return out


def read_masks(
    paths: Sequence[str | os.PathLike[str]], size: int = TILE, workers: int | None = None
) -> np.ndarray:
    """Decode many masks in parallel into bool ``(N, size, size)``."""
    out = np.empty((len(paths), size, size), dtype=bool)

    def work(i: int) -> None:
        out[i] = read_mask(paths[i], size)

    _parallel(work, range(len(paths)), workers)
    return out


def is_black(images: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: tiles whose pixels all hold a single value ("black" tiles)."""
    flat = np.asarray(images).reshape(len(images), -1)
    return flat.min(axis=1) == flat.max(axis=1)


# --------------------------------------------------------------------------- CSV reading


def black_tiles(images_dir: Path, ids: list[str]) -> np.ndarray:
    """Which tiles of ``images_dir`` are black (one pixel value)."""
    return is_black(read_images([images_dir / f"{i}.png" for i in ids]))


def read_id_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """Read a CSV whose first column is ``id``; check columns, blank and duplicate ids."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, df.columns))}"
        )
    df = df[list(columns)].copy()
    df["id"] = df["id"].str.strip()
    blank = np.flatnonzero(df["id"].to_numpy() == "")
    if blank.size:
        raise DataError(f"{path}: empty id on data row {int(blank[0]) + 1}")
    bad = [i for i in df["id"] if not ID_RE.match(i)]
    if bad:
        raise DataError(f"{path}: id {bad[0]!r} has characters not allowed in a file name")
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: duplicate id {dup.iloc[0]!r} ({len(dup)} duplicate row(s))")
    return df


def read_depths(path: Path) -> pd.Series:
    """``depths.csv`` as a Series ``z`` (float) indexed by id."""
    df = read_id_csv(path, ["id", "z"])
    z = pd.to_numeric(df["z"], errors="coerce")
    if z.isna().any():
        row = int(np.flatnonzero(z.isna().to_numpy())[0])
        raise DataError(
            f"{path}: id {df['id'].iloc[row]!r} has a non-numeric depth {df['z'].iloc[row]!r}"
        )
    return pd.Series(z.to_numpy(dtype=np.float64), index=df["id"].to_numpy(), name="z")


def ids_from_folder(folder: str | os.PathLike[str]) -> list[str]:
    """Sorted ids (file stems) of the ``*.png`` tiles in a folder; a tile named ``X.PNG``
    or an id that cannot round-trip through the RLE CSV (spaces, commas, non-ASCII) is an
    error naming the file, before any work."""
    d = Path(folder)
    if not d.is_dir():
        raise DataError(f"{d}: image folder not found")
    files = [p for p in d.iterdir() if p.suffix.lower() == ".png" and p.is_file()]
    upper = [p for p in files if p.suffix != ".png"]
    if upper:
        raise DataError(
            f"{upper[0]}: tile extension must be lowercase .png ({len(upper)} file(s) like "
            "this); rename them"
        )
    bad = [p for p in files if not ID_RE.match(p.stem)]
    if bad:
        raise DataError(
            f"{bad[0]}: tile id {bad[0].stem!r} cannot be written to the RLE CSV (allowed: "
            f"ASCII letters, digits, '_', '.', '-'; {len(bad)} file(s) like this); rename them"
        )
    ids = sorted(p.stem for p in files)
    if not ids:
        raise DataError(f"{d}: no .png tiles in this folder")
    return ids


# --------------------------------------------------------------------------- dataset


@dataclass
class TrainSet:
    """Labelled tiles, sorted by id."""

    ids: list[str]
    images: np.ndarray  # uint8 (N, 101, 101)
    masks: np.ndarray  # bool (N, 101, 101)
    depths: np.ndarray  # float64 (N,), NaN when unknown
    black: np.ndarray = field(init=False)  # bool (N,)

    def __post_init__(self) -> None:
        self.black = is_black(self.images)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def coverage(self) -> np.ndarray:
        """Salt share of each mask, ``(N,)`` in [0, 1]."""
        return self.masks.reshape(len(self.masks), -1).mean(axis=1)


@dataclass
class TestSet:
    """Unlabelled tiles, sorted by id."""

    ids: list[str]
    images: np.ndarray  # uint8 (N, 101, 101)
    black: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.black = is_black(self.images)

    def __len__(self) -> int:
        return len(self.ids)


class TGSDirectory:
    """A Kaggle TGS-format folder; validates its structure on open."""

    def __init__(self, root: str | os.PathLike[str], size: int = TILE) -> None:
        self.root = Path(root)
        self.size = size
        if not self.root.is_dir():
            raise DataError(f"{self.root}: data folder not found")

    # paths
    @property
    def train_csv(self) -> Path:
        return self.root / "train.csv"

    @property
    def depths_csv(self) -> Path:
        return self.root / "depths.csv"

    @property
    def sample_submission_csv(self) -> Path:
        return self.root / "sample_submission.csv"

    @property
    def train_images_dir(self) -> Path:
        return self.root / "train" / "images"

    @property
    def train_masks_dir(self) -> Path:
        return self.root / "train" / "masks"

    @property
    def test_images_dir(self) -> Path:
        return self.root / "test" / "images"

    def _require_dir(self, d: Path) -> None:
        if not d.is_dir():
            raise DataError(f"{d}: folder not found (expected Kaggle TGS layout under {self.root})")

    # ids
    def train_ids(self) -> list[str]:
        """Sorted ids of ``train.csv``."""
        return sorted(read_id_csv(self.train_csv, ["id", "rle_mask"])["id"])

    def test_ids(self) -> list[str]:
        """Test ids: from ``sample_submission.csv`` (sorted) when present, else the image folder."""
        if self.sample_submission_csv.is_file():
            return sorted(read_id_csv(self.sample_submission_csv, ["id"])["id"])
        return ids_from_folder(self.test_images_dir)

    def submission_order(self) -> list[str] | None:
        """Ids in ``sample_submission.csv`` order, or ``None`` without that file."""
        if not self.sample_submission_csv.is_file():
            return None
        return list(read_id_csv(self.sample_submission_csv, ["id"])["id"])

    def depths(self) -> pd.Series:
        return read_depths(self.depths_csv)

    @staticmethod
    def _paths(folder: Path, ids: Sequence[str], what: str, csv: Path) -> list[Path]:
        paths = [folder / f"{i}.png" for i in ids]
        missing = [i for i, p in zip(ids, paths, strict=True) if not p.is_file()]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise DataError(f"{csv}: id {missing[0]!r}{more} listed without its {what} in {folder}")
        return paths

    # loading
    def load_train(self, verify_rle: bool = True, workers: int | None = None) -> TrainSet:
        """Load labelled tiles; with ``verify_rle`` every ``train.csv`` RLE must match its PNG."""
        self._require_dir(self.train_images_dir)
        self._require_dir(self.train_masks_dir)
        df = read_id_csv(self.train_csv, ["id", "rle_mask"]).sort_values("id", kind="stable")
        ids = df["id"].tolist()
        images = read_images(
            self._paths(self.train_images_dir, ids, "image", self.train_csv), self.size, workers
        )
        masks = read_masks(
            self._paths(self.train_masks_dir, ids, "mask", self.train_csv), self.size, workers
        )
        if verify_rle:
            for i, (tid, r) in enumerate(zip(ids, df["rle_mask"], strict=True)):
                try:
                    decoded = rle_mod.decode(r, (self.size, self.size))
                except rle_mod.RLEError as exc:
                    raise DataError(f"{self.train_csv}: id {tid!r}: bad rle_mask: {exc}") from None
                if not np.array_equal(decoded, masks[i]):
                    diff = int(np.count_nonzero(decoded != masks[i]))
                    raise DataError(
                        f"{self.train_csv}: id {tid!r}: rle_mask disagrees with "
                        f"{self.train_masks_dir / (tid + '.png')} in {diff} pixel(s)"
                    )
        depths = np.full(len(ids), np.nan)
        if self.depths_csv.is_file():
            z = self.depths()
            depths = z.reindex(ids).to_numpy(dtype=np.float64)
        return TrainSet(ids=ids, images=images, masks=masks, depths=depths)

    def load_test(
        self, images_dir: str | os.PathLike[str] | None = None, workers: int | None = None
    ) -> TestSet:
        """Load test tiles from ``test/images`` (ids per :meth:`test_ids`) or any folder."""
        if images_dir is not None:
            return load_folder(images_dir, self.size, workers)
        self._require_dir(self.test_images_dir)
        ids = self.test_ids()
        source = (
            self.sample_submission_csv
            if self.sample_submission_csv.is_file()
            else self.test_images_dir
        )
        images = read_images(
            self._paths(self.test_images_dir, ids, "image", source), self.size, workers
        )
        return TestSet(ids=ids, images=images)


def load_folder(
    folder: str | os.PathLike[str], size: int = TILE, workers: int | None = None
) -> TestSet:
    """Load every ``*.png`` tile of a folder (ids = sorted file stems)."""
    ids = ids_from_folder(folder)
    images = read_images([Path(folder) / f"{i}.png" for i in ids], size, workers)
    return TestSet(ids=ids, images=images)


@dataclass
class TileSet:
    """Tiles with masks to train on (uint8 images, bool masks, ids)."""

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray) -> TileSet:
        index = np.asarray(index, dtype=np.int64)
        return TileSet([self.ids[i] for i in index], self.images[index], self.masks[index])

    @staticmethod
    def concat(parts: list[TileSet]) -> TileSet:
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("no tiles to concatenate")
        return TileSet(
            [i for p in parts for i in p.ids],
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.masks for p in parts]),
        )
