"""Content hashes of inputs, so that reuse of a finished output is keyed by content."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

_BLOCK = 1 << 20


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def files_digest(named: Iterable[tuple[str, str | os.PathLike[str]]]) -> str:
    """SHA-256 over ``(name, file)`` pairs: each name, its length and the file's bytes (a
    renamed, added, removed or changed file changes it)."""
    h = hashlib.sha256()
    for name, path in named:
        with open(path, "rb") as fh:
            data = fh.read()
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()
