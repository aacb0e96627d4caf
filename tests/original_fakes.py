"""Fake original weight files (random values) in exactly the original formats and names.

- b.e.s.: Keras 2.2 ``save_weights`` HDF5 written with h5py as Keras 2 writes it (root
  attributes ``layer_names`` split into ``layer_names0..N`` past the object-header limit,
  ``keras_version``, ``backend``; one group per layer with ``weight_names``, empty for
  weightless layers; datasets at ``<layer>/<weight>:0``), the layers of
  ``unet_resnext_50_lovasz`` in their order (the 32 per-group ``stage*_conv2_<c>`` convs,
  ``csse_block_<i>cse_lin1`` ...).
- phalanx: ``torch.save(state_dict)`` in the legacy pickle format of PyTorch 0.4 (magic
  number, protocol version, system info, the pickled OrderedDict with CUDA storages as
  persistent ids, the sorted storage keys, then each storage's int64 element count and raw
  bytes) or the zip format (``<name>/data.pkl``, ``<name>/data/<key>``, ``byteorder``,
  ``version``). Tensors shared between ``resnet.*`` and the encoder share one storage.

Written by our own small writers (no PyTorch, no Keras 2); used by the tests and bench/.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    import h5py

KERAS2_HEADER_LIMIT = 64512
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPE_STORAGE = {"float32": "FloatStorage", "float64": "DoubleStorage", "int64": "LongStorage"}

# --------------------------------------------------------------------------- Keras 2 HDF5

Keras2Layers = list[tuple[str, list[tuple[str, np.ndarray]]]]


def _save_attr(group: h5py.Group, name: str, data: Sequence, limit: int) -> None:
    """Keras 2's ``save_attributes_to_hdf5_group``: split into ``name0..`` past ``limit``."""
    arr = np.asarray(data)
    n = 1
    chunks = np.array_split(arr, n)
    while any(c.nbytes > limit for c in chunks):
        n += 1
        chunks = np.array_split(arr, n)
    if n > 1:
        for i, c in enumerate(chunks):
            group.attrs[f"{name}{i}"] = c
    else:
        group.attrs[name] = arr


def write_keras2_h5(path: Path, layers: Keras2Layers, limit: int = KERAS2_HEADER_LIMIT) -> None:
    """A Keras 2 weights-only HDF5 file of ``layers`` (``(name, [(weight_name, array)])``)."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        _save_attr(f, "layer_names", [n.encode("utf8") for n, _ in layers], limit)
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for name, weights in layers:
            g = f.create_group(name)
            _save_attr(g, "weight_names", [w.encode("utf8") for w, _ in weights], limit)
            for wname, value in weights:
                g.create_dataset(wname, data=value)


# --------------------------------------------------------------------------- torch.save


class _Global:
    """A ``module.name`` reference pickled as a GLOBAL opcode (no such object exists here)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: object) -> None:  # pickle wants reduce functions callable
        raise NotImplementedError


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape

    def __reduce_ex__(self, protocol: int) -> tuple:
        stride = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        args = (self.storage, 0, self.shape, stride, False, OrderedDict())
        return _Global("torch._utils", "_rebuild_tensor_v2"), args


class _Storage:
    def __init__(self, key: str, array: np.ndarray) -> None:
        self.key, self.array = key, np.ascontiguousarray(array)


class _TorchPickler(pickle._Pickler):  # the Python pickler: its dispatch table is open
    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def __init__(self, file: io.BytesIO, location: str, legacy: bool) -> None:
        super().__init__(file, protocol=2)
        self.location, self.legacy = location, legacy

    def _save_global(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[_Global] = _save_global

    def persistent_id(self, obj: object) -> tuple | None:
        if not isinstance(obj, _Storage):
            return None
        module = "torch.cuda" if self.location.startswith("cuda") else "torch"
        stype = _Global(module, _DTYPE_STORAGE[str(obj.array.dtype)])
        record = ("storage", stype, obj.key, self.location, obj.array.size)
        return (*record, None) if self.legacy else record


def _tensors(state: dict[str, np.ndarray], legacy: bool) -> tuple[OrderedDict, list[_Storage]]:
    """Tensor stand-ins; one storage per distinct array (shared tensors share storage)."""
    by_id: dict[int, _Storage] = {}
    out: OrderedDict = OrderedDict()
    for key, value in state.items():
        s = by_id.get(id(value))
        if s is None:
            name = str(140234000000000 + 4096 * len(by_id)) if legacy else str(len(by_id))
            s = by_id[id(value)] = _Storage(name, value)
        out[key] = _Tensor(s, tuple(int(d) for d in np.shape(value)))
    return out, list(by_id.values())


def _dumps(obj: object, location: str, legacy: bool) -> bytes:
    buf = io.BytesIO()
    _TorchPickler(buf, location, legacy).dump(obj)
    return buf.getvalue()


def write_torch_legacy(path: Path, state: dict[str, np.ndarray], location: str = "cuda:0") -> None:
    """``torch.save(state_dict, path)`` as PyTorch 0.4 wrote it (legacy format)."""
    tensors, storages = _tensors(state, legacy=True)
    info = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}  # fmt: skip
    parts = [pickle.dumps(LEGACY_MAGIC, 2), pickle.dumps(1001, 2), pickle.dumps(info, 2)]
    parts.append(_dumps(tensors, location, legacy=True))
    keys = sorted(s.key for s in storages)
    parts.append(pickle.dumps(keys, 2))
    by_key = {s.key: s for s in storages}
    for k in keys:
        arr = by_key[k].array
        parts += [struct.pack("<q", arr.size), arr.astype(arr.dtype.newbyteorder("<")).tobytes()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(parts))


def write_torch_zip(path: Path, state: dict[str, np.ndarray], location: str = "cuda:0") -> None:
    """``torch.save(state_dict, path)`` in the zip format (PyTorch >= 1.6)."""
    tensors, storages = _tensors(state, legacy=False)
    name = path.name.split(".")[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{name}/data.pkl", _dumps(tensors, location, legacy=False))
        zf.writestr(f"{name}/byteorder", "little")
        for s in storages:
            zf.writestr(
                f"{name}/data/{s.key}", s.array.astype(s.array.dtype.newbyteorder("<")).tobytes()
            )
        zf.writestr(f"{name}/version", "3\n")


# --------------------------------------------------------------------------- random originals


def _conv(rng: np.random.Generator, o: int, i: int, k: int) -> np.ndarray:
    return rng.normal(0, np.sqrt(2.0 / (i * k * k)), (o, i, k, k)).astype(np.float32)


def _bn_values(rng: np.random.Generator, c: int) -> list[np.ndarray]:
    """gamma, beta, mean, variance."""
    return [
        rng.uniform(0.5, 1.5, c).astype(np.float32),
        rng.normal(0, 0.1, c).astype(np.float32),
        rng.normal(0, 0.1, c).astype(np.float32),
        rng.uniform(0.5, 1.5, c).astype(np.float32),
    ]


def phalanx_state(
    rng: np.random.Generator, variant: str, width: int = 64, depths: Sequence[int] = (3, 4, 6, 3)
) -> OrderedDict:
    """A random ``Res34Unet{variant}`` state_dict with the original's keys, in order."""
    w = width
    sd: OrderedDict = OrderedDict()

    def conv(key: str, o: int, i: int, k: int, bias: bool = False) -> np.ndarray:
        sd[f"{key}.weight"] = _conv(rng, o, i, k)
        if bias:
            sd[f"{key}.bias"] = rng.normal(0, 0.1, o).astype(np.float32)
        return sd[f"{key}.weight"]

    def bn(key: str, c: int) -> None:
        for suffix, v in zip(
            ("weight", "bias", "running_mean", "running_var"), _bn_values(rng, c), strict=True
        ):
            sd[f"{key}.{suffix}"] = v

    def linear(key: str, o: int, i: int) -> None:
        sd[f"{key}.weight"] = rng.normal(0, np.sqrt(1.0 / i), (o, i)).astype(np.float32)
        sd[f"{key}.bias"] = rng.normal(0, 0.1, o).astype(np.float32)

    conv("resnet.conv1", w, 3, 7)
    bn("resnet.bn1", w)
    cin = w
    for s, depth in enumerate(depths, start=1):
        c = w * 2 ** (s - 1)
        for u in range(depth):
            p = f"resnet.layer{s}.{u}"
            conv(f"{p}.conv1", c, cin, 3)
            bn(f"{p}.bn1", c)
            conv(f"{p}.conv2", c, c, 3)
            bn(f"{p}.bn2", c)
            if cin != c:
                conv(f"{p}.downsample.0", c, cin, 1)
                bn(f"{p}.downsample.1", c)
            cin = c
    linear("resnet.fc", 1000, 8 * w)
    shared = {k.removeprefix("resnet."): v for k, v in sd.items()}
    if variant == "v5":
        conv("conv1.0", w, 3, 3)
    else:
        sd["conv1.0.weight"] = shared["conv1.weight"]
    for suffix in ("weight", "bias", "running_mean", "running_var"):
        sd[f"conv1.1.{suffix}"] = shared[f"bn1.{suffix}"]
    for s in range(1, 5):
        c = w * 2 ** (s - 1)
        for k, v in shared.items():
            if k.startswith(f"layer{s}."):
                sd[f"encode{s + 1}.0.{k.removeprefix(f'layer{s}.')}"] = v
        conv(f"encode{s + 1}.1.satt.squeeze", 1, c, 1)
        conv(f"encode{s + 1}.1.catt.conv1", c // 4, c, 1, bias=True)
        conv(f"encode{s + 1}.1.catt.conv2", c, c // 4, 1, bias=True)
    e5, f = 8 * w, 4 * w
    conv("center.0.glob.1", f, e5, 1)
    for name, o, i, k in (("down2_1", e5, e5, 5), ("down2_2", f, e5, 5), ("down3_1", e5, e5, 3),
                          ("down3_2", f, e5, 3), ("conv1", f, e5, 1)):  # fmt: skip
        conv(f"center.0.{name}.0", o, i, k)
        bn(f"center.0.{name}.1", o)
    half, red = w // 2, max(1, w // 16)
    for k, up_in, x_in in ((5, f, e5), (4, w, 4 * w), (3, w, 2 * w), (2, w, w)):
        p = f"decode{k}"
        conv(f"{p}.x_conv", half, x_in, 1)
        sd[f"{p}.tr_conv.weight"] = rng.normal(
            0, np.sqrt(2.0 / (up_in * 4)), (up_in, half, 2, 2)
        ).astype(np.float32)
        sd[f"{p}.tr_conv.bias"] = rng.normal(0, 0.1, half).astype(np.float32)
        bn(f"{p}.bn", w)
        conv(f"{p}.s_att.squeeze", 1, w, 1)
        conv(f"{p}.c_att.conv1", red, w, 1, bias=True)
        conv(f"{p}.c_att.conv2", w, red, 1, bias=True)
    if variant in ("v3", "v4"):
        conv("decode1.conv1.0", half, w, 3)
        bn("decode1.conv1.1", half)
        conv("decode1.conv2.0", w, half, 3)
        bn("decode1.conv2.1", w)
        conv("decode1.s_att.squeeze", 1, w, 1)
        conv("decode1.c_att.conv1", red, w, 1, bias=True)
        conv("decode1.c_att.conv2", w, red, 1, bias=True)
    if variant == "v4":
        conv("logit.0", w, 5 * w, 3, bias=True)
        conv("logit.2", 1, w, 1)
    elif variant == "v5":
        conv("logit.0", half, 4 * w, 3, bias=True)
        conv("logit.2", 1, half, 1)
    else:
        conv("fuse_pixel.0", w, 5 * w, 3)
        bn("fuse_pixel.1", w)
        conv("logit_pixel", 1, w, 1)
        linear("fuse_image.0", w, e5)
        linear("logit_image.0", 1, w)
        conv("logit.0", w, 2 * w, 3)
        conv("logit.2", 1, w, 1)
    return sd


def bes_layers(
    rng: np.random.Generator,
    width: int = 64,
    depths: Sequence[int] = (3, 4, 6, 3),
    decoder: Sequence[int] = (128, 64, 32, 16, 8),
    cardinality: int = 32,
) -> Keras2Layers:
    """The layers of a random ``unet_resnext_50_lovasz`` (Keras 2 names, kernels HWIO)."""
    layers: Keras2Layers = []
    counter: dict[str, int] = {}

    def anon(kind: str) -> None:  # a weightless layer with a Keras 2 auto name
        counter[kind] = counter.get(kind, 0) + 1
        layers.append((f"{kind}_{counter[kind]}", []))

    def conv(name: str, i: int, o: int, k: int, bias: bool = False) -> None:
        ws = [(f"{name}/kernel:0", _conv(rng, o, i, k).transpose(2, 3, 1, 0).copy())]
        if bias:
            ws.append((f"{name}/bias:0", rng.normal(0, 0.1, o).astype(np.float32)))
        layers.append((name, ws))

    def bn(name: str, c: int, scale: bool = True) -> None:
        values = _bn_values(rng, c)
        names = ("gamma", "beta", "moving_mean", "moving_variance")
        ws = [(f"{name}/{n}:0", v) for n, v in zip(names, values, strict=True)]
        layers.append((name, ws if scale else ws[1:]))

    layers.append(("data", []))
    bn("bn_data", 3, scale=False)
    anon("zero_padding2d")
    conv("conv0", 3, width, 7)
    bn("bn0", width)
    layers.append(("relu0", []))
    anon("zero_padding2d")
    layers.append(("pooling0", []))
    cin = width
    for s, depth in enumerate(depths, start=1):
        f = 2 * width * 2 ** (s - 1)
        g = f // cardinality
        for u in range(1, depth + 1):
            p = f"stage{s}_unit{u}"
            conv(f"{p}_conv1", cin, f, 1)
            bn(f"{p}_bn1", f)
            layers.append((f"{p}_relu1", []))
            anon("zero_padding2d")
            for _ in range(cardinality):
                anon("lambda")
            for c in range(cardinality):
                conv(f"{p}_conv2_{c}", g, g, 3)
            anon("concatenate")
            bn(f"{p}_bn2", f)
            layers.append((f"{p}_relu2", []))
            conv(f"{p}_conv3", f, 2 * f, 1)
            bn(f"{p}_bn3", 2 * f)
            if u == 1:
                conv(f"{p}_sc", cin, 2 * f, 1)
                bn(f"{p}_sc_bn", 2 * f)
            anon("add")
            layers.append((f"{p}_relu", []))
            cin = 2 * f
    skips = [16 * width, 8 * width, 4 * width, width, 0]  # stage4..2 unit1_relu1, relu0
    for i, (f, skip) in enumerate(zip(decoder, skips, strict=True)):
        p = f"decoder_stage{i}"
        w = rng.normal(0, np.sqrt(2.0 / (cin * 4)), (4, 4, f, cin)).astype(np.float32)
        layers.append((f"{p}_upsample", [(f"{p}_upsample/kernel:0", w)]))
        bn(f"{p}_bn1", f)
        layers.append((f"{p}_relu1", []))
        if skip:
            anon("concatenate")
        conv(f"{p}_conv2", f + skip, f, 3)
        bn(f"{p}_bn2", f)
        layers.append((f"{p}_relu2", []))
        c = f"csse_block_{i}"
        anon("lambda")
        for name, a, b in ((f"{c}cse_lin1", f, f // 2), (f"{c}cse_lin2", f // 2, f)):
            kernel = rng.normal(0, np.sqrt(1.0 / a), (a, b)).astype(np.float32)
            layers.append(
                (
                    name,
                    [
                        (f"{name}/kernel:0", kernel),
                        (f"{name}/bias:0", rng.normal(0, 0.1, b).astype(np.float32)),
                    ],
                )
            )
        anon("multiply")
        conv(f"{c}_conv", f, f, 1, bias=True)
        layers += [(f"{c}_mul", []), (f"{c}_csse_mul", [])]
        cin = f
    anon("spatial_dropout2d")
    conv("prediction", cin, 1, 1, bias=True)
    return layers


def keras2_weights(layers: Keras2Layers) -> dict[str, np.ndarray]:
    """``{"<layer>/<weight>": array}`` of :func:`bes_layers` (what the reader returns)."""
    return {w.split(":")[0]: v for _, ws in layers for w, v in ws}


# --------------------------------------------------------------------------- a whole layout

BES_FOLDERS = ("2_2", "2_3", "2_4", "2_5")
PHALANX_SNAPSHOTS = {0: 4, 1: 4, 2: 4, 3: 3, 4: 3}


def write_original_layout(
    root: Path,
    width: int | None = None,
    depths: Sequence[int] = (1, 1, 1, 1),
    seed: int = 0,
    zip_format: Callable[[int, int], bool] = lambda fold, snap: False,
) -> Path:
    """The unzipped original weights under ``root`` (``bes/weights/...``,
    ``phalanx/weights/...``): 20 b.e.s. and 18 phalanx files of random weights.
    ``width=None``: full networks (slow); else that width with ``depths``."""
    rng = np.random.default_rng(seed)
    full = width is None
    w = 64 if full else width
    d = (3, 4, 6, 3) if full else tuple(depths)
    dec = tuple(max(8, f * w // 64) for f in (128, 64, 32, 16, 8))
    for folder in BES_FOLDERS:
        for k in range(5):
            path = (
                root / "bes/weights" / f"unet_resnext_50_lovasz_stage_{folder}" / f"fold_{k}.hdf5"
            )
            write_keras2_h5(
                path, bes_layers(rng, w, d, dec), limit=KERAS2_HEADER_LIMIT if full else 2048
            )
    for k, n in PHALANX_SNAPSHOTS.items():
        for s in range(n):
            path = root / "phalanx/weights" / f"model_128_res34v5{k}{s}.pth"
            state = phalanx_state(rng, "v5", w, d)
            (write_torch_zip if zip_format(k, s) else write_torch_legacy)(path, state)
    return root
