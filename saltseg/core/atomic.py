"""Atomic file writes: write to a temporary file in the same folder, then rename.

A reader (or a resumed job) never sees a half-written file under the final name: the
temporary file is flushed and fsynced, optionally verified, then renamed over the final
name (and the folder fsynced). Any failure removes the temporary file and keeps the
previous output. Out-of-space and I/O errors become an :class:`OutputError` naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from saltseg.core.errors import OutputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()
"""Mode of a normally created file (temporary files start private, 0600)."""
_DIR_MODE = 0o777 & ~_current_umask()

WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS}
"""Errors of a full or failing file system (reported as :class:`OutputError`)."""

_WRITE_TEXTS = ("no space left", "disk quota", "input/output error", "errno = 28", "errno = 5,")


def is_write_failure(exc: BaseException) -> bool:
    """An OSError of a full, read-only or failing file system (HDF5 puts the errno in text)."""
    if not isinstance(exc, OSError):
        return False
    if exc.errno in WRITE_ERRNOS:
        return True
    text = str(exc).lower()
    return any(t in text for t in _WRITE_TEXTS)


@contextlib.contextmanager
def output_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full-disk or I/O failure inside the block into an error naming ``path``."""
    try:
        yield
    except OSError as exc:
        if not is_write_failure(exc):
            raise
        reason = os.strerror(exc.errno) if exc.errno else str(exc).split("(")[0].strip()
        raise OutputError(
            f"{path}: cannot write ({reason}); the previous output, if any, is unchanged. "
            "Free space or choose another folder, then rerun"
        ) from exc


def ensure_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and parents); a file in the way is an error naming it."""
    d = Path(folder)
    for p in (d, *d.parents):
        if p.exists() and not p.is_dir():
            raise OutputError(f"{p}: is a file, not a folder; cannot write into it")
        if p.is_dir():
            break
    with output_errors(d):
        d.mkdir(parents=True, exist_ok=True)
    return d


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a written file (or a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str],
    verify: Callable[[Path], None] | None = None,
    durable: bool = True,
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it, run ``verify(tmp)``
    (which raises on a bad file), and rename it over ``path``. ``durable=False`` skips the
    fsyncs (bulk files that can be regenerated, or a writer that fsyncs itself).

    The temporary name keeps the final suffixes (``.png``, ``.weights.h5``) so that
    writers choosing a format by extension (OpenCV, matplotlib, Keras) behave as for the
    final name.
    """
    final = Path(path)
    ensure_folder(final.parent)
    suffix = "".join(final.suffixes[-2:])  # keeps ".weights.h5" whole
    with output_errors(final):
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".tmp-{final.stem}-", suffix=suffix)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with output_errors(final):
            yield tmp_path
            if durable:
                fsync_path(tmp_path)
            if verify is not None:
                verify(tmp_path)
            os.chmod(tmp_path, _FILE_MODE)
            os.replace(tmp_path, final)
            if durable:
                fsync_path(final.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``path`` only if the block succeeds."""
    with atomic_path(path, durable=False) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> None:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def swap_in(staging: Path, final: Path) -> None:
    """Replace folder ``final`` by ``staging`` (the old folder removed only after the move)."""
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    with output_errors(final):
        if final.exists():
            os.replace(final, old)
        os.replace(staging, final)
        fsync_path(final.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder next to ``path``; on success it replaces ``path``
    (whose previous contents stay untouched until then); on failure it is removed."""
    final = Path(path)
    ensure_folder(final.parent)
    with output_errors(final):
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".staging-{final.name}-"))
    try:
        with output_errors(final):
            yield staging
        os.chmod(staging, _DIR_MODE)
        swap_in(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
