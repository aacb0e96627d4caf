"""Weight files of other frameworks read into numpy, with neither Keras 2 nor PyTorch.

Three formats, each read into an ordered ``{key: np.ndarray}``:

- Keras 2 weights-only HDF5 (``model.save_weights``, the original b.e.s. files): the root
  attribute ``layer_names`` (split into ``layer_names0``, ``layer_names1``, ... when it
  exceeds the HDF5 object-header limit, as it does for the ~1,300 layers of the U-ResNeXt50)
  lists every layer; each layer group's ``weight_names`` lists its weights in order (empty for
  weightless layers). Keys are ``"<layer>/<weight>"``, e.g. ``"conv0/kernel"``: the layer
  group's name and the weight's last name part without ``":0"`` (a TensorFlow scope suffix in
  a weight name does not matter); a nested model's group (a multi-GPU template) is read as
  its layers. A full-model file (``model_weights`` group) is read the same way.
- PyTorch ``torch.save(state_dict)`` files, the legacy (non-zip, PyTorch < 1.6: the original
  phalanx files) and the zip format. A restricted unpickler accepts only the tensor rebuild
  functions, storage classes and ``collections.OrderedDict``; anything else (a class whose
  ``__reduce__`` would run code) is refused with an error naming it, so loading never runs
  code from the file. CUDA storages are read onto the CPU. Keys are the state_dict's.
- ``.safetensors`` (the ``safetensors`` package's numpy API).

Every error is a :class:`~saltseg.core.errors.DataError` naming the file (and the key).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.core.errors import DataError

Weights = dict[str, np.ndarray]
"""Weights by key, in the file's order."""

# --------------------------------------------------------------------------- Keras 2 HDF5


def _attr_list(obj: Any, name: str) -> list[str] | None:
    """A Keras 2 string-list attribute, joined from ``name0``, ``name1``, ... when split."""
    if name in obj.attrs:
        raw = list(obj.attrs[name])
    elif f"{name}0" in obj.attrs:
        raw, k = [], 0
        while f"{name}{k}" in obj.attrs:
            raw.extend(obj.attrs[f"{name}{k}"])
            k += 1
    else:
        return None
    return [r.decode("utf8") if isinstance(r, bytes) else str(r) for r in raw]


def _weight_keys(group: str, weight_names: list[str]) -> list[str]:
    """``"<layer>/<weight>"`` for a Keras 2 group's weight names (``"conv0/kernel:0"``): the
    group's name is the layer, unless the group is a nested model (its weights name several
    layers, e.g. the template model of a multi-GPU wrapper): then each weight's own layer."""
    parts = [w.split(":", 1)[0].split("/") for w in weight_names]
    owners = {p[-2] for p in parts if len(p) > 1}
    if len(owners) > 1:
        return [f"{p[-2]}/{p[-1]}" if len(p) > 1 else f"{group}/{p[-1]}" for p in parts]
    return [f"{group}/{p[-1]}" for p in parts]


def read_keras2_layers(path: str | os.PathLike[str]) -> dict[str, Weights]:
    """Every layer of a Keras 2 HDF5 weights file, in order: ``{layer: {key: array}}``
    (weightless layers map to ``{}``)."""
    import h5py

    p = Path(path)
    try:
        fh = h5py.File(p, "r")
    except OSError as exc:
        raise DataError(f"{p}: cannot read HDF5 (truncated or not HDF5: {exc})") from None
    with fh:
        root = fh.get("model_weights", fh)
        names = _attr_list(root, "layer_names")
        if names is None:
            raise DataError(f"{p}: not a Keras 2 weights file (no 'layer_names' attribute)")
        out: dict[str, Weights] = {}
        for layer in names:
            if layer not in root:
                raise DataError(f"{p}: layer {layer!r} is listed but has no group")
            group = root[layer]
            weights: Weights = {}
            names = _attr_list(group, "weight_names") or []
            for wname, key in zip(names, _weight_keys(layer, names), strict=True):
                if key in weights:
                    raise DataError(f"{p}: weight {key!r} appears twice in layer {layer!r}")
                try:
                    weights[key] = np.asarray(group[wname])
                except (KeyError, OSError) as exc:
                    raise DataError(f"{p}: cannot read weight {wname!r} ({exc})") from None
            out[layer] = weights
    return out


def read_keras2_h5(path: str | os.PathLike[str]) -> Weights:
    """All weights of a Keras 2 HDF5 file, keys ``"<layer>/<weight>"`` (module docstring)."""
    return {k: v for layer in read_keras2_layers(path).values() for k, v in layer.items()}


# --------------------------------------------------------------------------- PyTorch

_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""The number a legacy ``torch.save`` file starts with."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: only its element type matters."""

    dtype: str
    name: str


@dataclass
class _Storage:
    """A storage of the file: filled from the file's data after unpickling."""

    key: str
    dtype: str
    numel: int
    location: str
    data: np.ndarray | None = None
    view_of: tuple[_Storage, int] | None = None

    def array(self) -> np.ndarray:
        if self.view_of is not None:
            root, offset = self.view_of
            return root.array()[offset : offset + self.numel]
        if self.data is None:
            raise DataError(f"storage {self.key} has no data")
        return self.data


@dataclass(frozen=True)
class _TensorRef:
    """Stand-in for a tensor: its storage, offset, size and stride (in elements)."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> _TensorRef:
    return _TensorRef(
        storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    )


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a state_dict and nothing else: no class of the file's choosing is loaded."""

    def __init__(
        self, file: io.BytesIO, path: Path, storage: Callable[[tuple[Any, ...]], _Storage]
    ) -> None:
        super().__init__(file, encoding="utf-8")
        self.path = path
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name], f"{module}.{name}")
        raise DataError(
            f"{self.path}: refusing to load {module}.{name}: a weights file holds only "
            "tensors, storages and OrderedDicts (loading never runs code from the file)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            kind = pid[0] if isinstance(pid, tuple) and pid else type(pid).__name__
            raise DataError(f"{self.path}: refusing persistent object {kind!r} (not a storage)")
        return self._storage(pid)


def _storage_factory(path: Path, storages: dict[str, _Storage]) -> Callable[..., _Storage]:
    def make(pid: tuple[Any, ...]) -> _Storage:
        if len(pid) < 5 or not isinstance(pid[1], _StorageType):
            raise DataError(f"{path}: malformed storage record {pid[:2]!r}")
        stype, key, location, numel = pid[1], str(pid[2]), str(pid[3]), int(pid[4])
        root = storages.get(key)
        if root is None:
            root = storages[key] = _Storage(key, stype.dtype, numel, location)
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return root
        view_key, offset, view_size = view
        return _Storage(
            str(view_key), stype.dtype, int(view_size), location, None, (root, int(offset))
        )

    return make


def _unpickle(buf: io.BytesIO, path: Path, make: Callable[..., _Storage]) -> Any:
    try:
        return _RestrictedUnpickler(buf, path, make).load()
    except DataError:
        raise
    except Exception as exc:  # truncated or corrupt pickle
        raise DataError(
            f"{path}: not a readable PyTorch file ({type(exc).__name__}: {exc})"
        ) from None


def _materialise(path: Path, key: str, t: _TensorRef) -> np.ndarray:
    data = t.storage.array()
    span = 1 + sum((n - 1) * s for n, s in zip(t.size, t.stride, strict=True))
    if not all(t.size):
        span = 0
    if t.offset < 0 or t.offset + span > len(data):
        raise DataError(f"{path}: tensor {key!r} reaches past its storage")
    if span == 0:
        return np.zeros(t.size, dtype=data.dtype)
    item = data.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[t.offset :], shape=t.size, strides=[s * item for s in t.stride], writeable=False
    )
    return np.array(view, dtype=data.dtype.newbyteorder("="))


def _fill(path: Path, storage: _Storage, raw: bytes | memoryview, where: str) -> None:
    dtype = np.dtype(storage.dtype)
    need = storage.numel * dtype.itemsize
    if len(raw) < need:
        raise DataError(
            f"{path}: {where}: storage {storage.key} truncated ({len(raw)} of {need} bytes)"
        )
    storage.data = np.frombuffer(raw, dtype=dtype, count=storage.numel)


def _read_legacy(path: Path, blob: bytes) -> tuple[Any, dict[str, _Storage]]:
    buf = io.BytesIO(blob)
    storages: dict[str, _Storage] = {}
    make = _storage_factory(path, storages)
    if _unpickle(buf, path, make) != LEGACY_MAGIC:
        raise DataError(f"{path}: not a PyTorch file (no legacy magic number, not a zip)")
    _unpickle(buf, path, make)  # protocol version
    _unpickle(buf, path, make)  # system info
    obj = _unpickle(buf, path, make)
    keys = _unpickle(buf, path, make)
    view = memoryview(blob)
    pos = buf.tell()
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise DataError(f"{path}: data for storage {key} that no tensor uses")
        if pos + 8 > len(blob):
            raise DataError(f"{path}: truncated at storage {key}")
        (numel,) = struct.unpack_from("<q", blob, pos)
        pos += 8
        if numel != storage.numel:
            raise DataError(
                f"{path}: storage {key} holds {numel} elements, expected {storage.numel}"
            )
        nbytes = numel * np.dtype(storage.dtype).itemsize
        _fill(path, storage, view[pos : pos + nbytes], "legacy data")
        pos += nbytes
    return obj, storages


def _read_zip(path: Path) -> tuple[Any, dict[str, _Storage]]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable zip ({exc})") from None
    with zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl")]
        if not pkl:
            raise DataError(f"{path}: a zip without data.pkl (not a PyTorch file)")
        prefix = pkl[0][: -len("data.pkl")]
        order = f"{prefix}byteorder"
        if order in names and zf.read(order).strip() != b"little":
            raise DataError(f"{path}: big-endian tensors are not supported")
        storages: dict[str, _Storage] = {}
        try:
            blob = zf.read(pkl[0])
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataError(f"{path}: cannot read data.pkl ({exc})") from None
        obj = _unpickle(io.BytesIO(blob), path, _storage_factory(path, storages))
        for key, storage in storages.items():
            entry = f"{prefix}data/{key}"
            try:
                raw = zf.read(entry)
            except KeyError:
                raise DataError(f"{path}: storage entry {entry} missing") from None
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise DataError(f"{path}: cannot read {entry} ({exc})") from None
            _fill(path, storage, raw, entry)
    return obj, storages


def read_torch(path: str | os.PathLike[str]) -> Weights:
    """A PyTorch state_dict file (legacy or zip format) as numpy arrays, keys in order."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: weights file not found")
    if zipfile.is_zipfile(p):
        obj, _ = _read_zip(p)
    else:
        obj, _ = _read_legacy(p, p.read_bytes())
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise DataError(f"{p}: holds a {type(obj).__name__}, not a state_dict")
    out: Weights = {}
    for key, value in obj.items():
        if not isinstance(value, _TensorRef):
            raise DataError(f"{p}: key {key!r} is a {type(value).__name__}, not a tensor")
        out[str(key)] = _materialise(p, str(key), value)
    return out


# --------------------------------------------------------------------------- safetensors


def read_safetensors(path: str | os.PathLike[str]) -> Weights:
    """A ``.safetensors`` file as numpy arrays."""
    from safetensors.numpy import load_file

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: weights file not found")
    try:
        return dict(load_file(str(p)))
    except Exception as exc:  # SafetensorError, truncated header, bad dtype
        raise DataError(f"{p}: not a readable safetensors file ({exc})") from None


def read_weights(path: str | os.PathLike[str]) -> Weights:
    """Any of the three formats, by suffix: ``.h5``/``.hdf5`` (Keras 2), ``.pth``/``.pt``/
    ``.bin`` (PyTorch), ``.safetensors``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: weights file not found")
    suffix = p.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return read_keras2_h5(p)
    if suffix in (".pth", ".pt", ".bin"):
        return read_torch(p)
    if suffix == ".safetensors":
        return read_safetensors(p)
    raise DataError(f"{p}: unknown weights format (expected .h5, .hdf5, .pth, .pt, .safetensors)")
