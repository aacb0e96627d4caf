"""Exported copies of a network (OpenVINO IR, ONNX), cached beside its weights.

An export of ``W.weights.h5`` for backend ``B`` lives in
``<W's folder>/.exports/W.weights.h5.B.<first 16 hex of W's sha256>/``: the model file(s)
and ``export.json`` (the weights' sha256, each model file's sha256, the Keras and saltseg
versions). It is built in a temporary folder and renamed into place whole, so a crash
leaves no half export. Before use every file's hash is checked against ``export.json``: a
missing or corrupt export is removed and built again, never used. Exports of older weights
of the same file name are removed when a new one is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from saltseg import __version__

EXPORT_JSON = "export.json"
MODEL_FILES = {"openvino": "model.xml", "onnxruntime": "model.onnx"}
"""The file each backend loads (OpenVINO also writes ``model.bin`` beside its XML)."""


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_dir(weights: Path, backend: str, weights_sha: str) -> Path:
    """Where the export of ``weights`` (of hash ``weights_sha``) for ``backend`` lives."""
    return weights.parent / ".exports" / f"{weights.name}.{backend}.{weights_sha[:16]}"


def verify(folder: Path, weights_sha: str) -> bool:
    """Whether ``folder`` holds a complete export of these weights, every file intact."""
    try:
        meta = json.loads((folder / EXPORT_JSON).read_text(encoding="utf-8"))
        if meta.get("weights_sha256") != weights_sha or not meta.get("files"):
            return False
        return all(sha256_file(folder / n) == h for n, h in meta["files"].items())
    except (OSError, ValueError, AttributeError):
        return False


def cached_export(
    weights: Path, backend: str, build: Callable[[Path], None], log: Callable[[str], None] = print
) -> Path:
    """The intact export of ``weights`` for ``backend``: reused, or built by ``build(path)``
    (which writes the model file ``path``) when missing, stale or corrupt."""
    if backend not in MODEL_FILES:
        raise ValueError(f"no export for backend {backend!r} ({', '.join(MODEL_FILES)})")
    sha = sha256_file(weights)
    folder = export_dir(weights, backend, sha)
    if verify(folder, sha):
        return folder / MODEL_FILES[backend]
    if folder.exists():
        log(f"[export] {folder}: incomplete or corrupt; building it again")
        shutil.rmtree(folder)
    for old in folder.parent.glob(f"{weights.name}.{backend}.*"):
        if old.name != folder.name and not old.name.endswith(".tmp"):
            shutil.rmtree(old, ignore_errors=True)
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp / MODEL_FILES[backend])
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        meta = {
            "weights": weights.name,
            "weights_sha256": sha,
            "backend": backend,
            "files": files,
            "saltseg_version": __version__,
            "keras_version": _keras_version(),
        }
        (tmp / EXPORT_JSON).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"[export] {backend} export of {weights.name} -> {folder}")
    return folder / MODEL_FILES[backend]


def _keras_version() -> str:
    import keras

    return str(keras.__version__)
