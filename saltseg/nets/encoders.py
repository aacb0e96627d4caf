"""ResNet34 and ResNeXt50 encoders, written functionally with ``keras.layers``.

An encoder is a function ``encoder(x, **options) -> EncoderFeatures`` applied to a symbolic
input tensor. Layer names are stable and follow the convention of the Keras ResNet/ResNeXt
ports the original b.e.s. code used, so published weights can be mapped onto them:

- stem: ``bn_data`` (ResNeXt only: input BatchNorm without scale), ``conv0``, ``bn0``,
  ``relu0``, ``pooling0`` (the 3x3/2 max-pool, if enabled);
- unit ``u`` of stage ``s`` (both 1-based): ``stage{s}_unit{u}_conv{k}``, ``_bn{k}``,
  ``_relu{k}``, the projection shortcut ``_sc`` / ``_sc_bn``, then ``_add`` and ``_relu``.

``width`` is the number of stem filters (64 for the published networks) and scales every
stage; ``depths`` gives the units per stage (3-4-6-3 for both published networks).
Weights start random; :func:`load_encoder_weights` copies encoder layers from a local
``.keras`` model, a by-name ``.weights.h5`` written by :func:`save_encoder_weights`, a
Keras 2 HDF5 ImageNet file (``resnext50_imagenet_1000_no_top.h5``, the b.e.s. start) or a
torchvision ``resnet34`` / ``resnext50_32x4d`` state_dict (``.pth``, ``.safetensors``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
from keras import layers

from saltseg.core.errors import SaltsegError
from saltseg.nets.layers import TORCH_BN, GroupedConv2D, batch_norm, conv2d

# Original ResNeXt (MXNet-converted) BatchNorm settings.
RESNEXT_BN: dict[str, float] = {"epsilon": 2e-5, "momentum": 0.99}
FULL_DEPTHS: tuple[int, int, int, int] = (3, 4, 6, 3)

StageHook = Callable[[Any, int], Any]
"""``hook(stage_output, stage_number) -> tensor``: applied after each stage (1-based)."""


class EncoderWeightsError(SaltsegError):
    """Encoder weights file missing, unreadable or not matching the encoder."""


class EncoderFeatures(NamedTuple):
    """What an encoder returns.

    ``skips``: one feature map per resolution above the deepest one, highest resolution
    first, each taken at the start of a stage (stem activation, then the input activation
    of stages 2..4). ``deepest``: output of the last stage. ``stages``: output of every
    stage (after the stage hook). ``layer_names``: names of the encoder's own layers
    (not the hook's), used to load encoder weights by name.
    """

    skips: list[Any]
    deepest: Any
    stages: list[Any]
    layer_names: tuple[str, ...]


def _upstream_layer_names(outputs: Any) -> set[str]:
    """Names of all layers that feed ``outputs`` (a walk of the symbolic graph)."""
    seen: set[str] = set()
    stack = list(outputs) if isinstance(outputs, list | tuple) else [outputs]
    visited: set[int] = set()
    while stack:
        t = stack.pop()
        if id(t) in visited:
            continue
        visited.add(id(t))
        history = getattr(t, "_keras_history", None)
        if history is None:
            continue
        layer = history.operation
        seen.add(layer.name)
        stack.extend(layer._inbound_nodes[history.node_index].input_tensors)
    return seen


def _validate(width: int, depths: Sequence[int]) -> tuple[int, ...]:
    depths = tuple(int(d) for d in depths)
    if len(depths) != 4 or min(depths) < 1:
        raise ValueError(f"depths must be 4 positive integers, got {depths}")
    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    return depths


def _basic_unit(x: Any, filters: int, strides: int, prefix: str, bn: dict[str, float]) -> Any:
    """ResNet basic block (post-activation, torchvision layout)."""
    shortcut = x
    y = conv2d(x, filters, 3, f"{prefix}_conv1", strides=strides)
    y = batch_norm(y, f"{prefix}_bn1", bn)
    y = layers.Activation("relu", name=f"{prefix}_relu1")(y)
    y = conv2d(y, filters, 3, f"{prefix}_conv2")
    y = batch_norm(y, f"{prefix}_bn2", bn)
    if strides != 1 or int(x.shape[-1]) != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{prefix}_sc")(
            x
        )
        shortcut = batch_norm(shortcut, f"{prefix}_sc_bn", bn)
    y = layers.Add(name=f"{prefix}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{prefix}_relu")(y)


def _bottleneck_unit(
    x: Any,
    filters: int,
    strides: int,
    cardinality: int,
    prefix: str,
    bn: dict[str, float],
) -> tuple[Any, Any]:
    """ResNeXt bottleneck (1x1 -> grouped 3x3 (stride) -> 1x1 to ``2 * filters``).

    Returns the unit output and its first activation (``_relu1``, the "stage start").
    """
    if filters % cardinality:
        raise ValueError(
            f"{prefix}: {filters} bottleneck channels not divisible by cardinality {cardinality}"
        )
    y = layers.Conv2D(filters, 1, use_bias=False, name=f"{prefix}_conv1")(x)
    y = batch_norm(y, f"{prefix}_bn1", bn)
    start = y = layers.Activation("relu", name=f"{prefix}_relu1")(y)
    y = layers.ZeroPadding2D(1, name=f"{prefix}_pad2")(y)
    y = GroupedConv2D(
        filters,
        3,
        strides=strides,
        groups=cardinality,
        use_bias=False,
        name=f"{prefix}_conv2",
    )(y)
    y = batch_norm(y, f"{prefix}_bn2", bn)
    y = layers.Activation("relu", name=f"{prefix}_relu2")(y)
    y = layers.Conv2D(2 * filters, 1, use_bias=False, name=f"{prefix}_conv3")(y)
    y = batch_norm(y, f"{prefix}_bn3", bn)
    shortcut = x
    if strides != 1 or int(x.shape[-1]) != 2 * filters:
        shortcut = layers.Conv2D(
            2 * filters, 1, strides=strides, use_bias=False, name=f"{prefix}_sc"
        )(x)
        shortcut = batch_norm(shortcut, f"{prefix}_sc_bn", bn)
    y = layers.Add(name=f"{prefix}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{prefix}_relu")(y), start


def _own_layer_names(inputs: Any, outputs: list[Any], hooked: set[str]) -> tuple[str, ...]:
    names = _upstream_layer_names(outputs) - _upstream_layer_names(inputs) - hooked
    return tuple(sorted(names))


def resnet34(
    x: Any,
    *,
    width: int = 64,
    depths: Sequence[int] = FULL_DEPTHS,
    stem: str = "7x7",
    max_pool: bool = True,
    stage_hook: StageHook | None = None,
    bn: dict[str, float] | None = None,
) -> EncoderFeatures:
    """ResNet34 encoder (basic blocks ``depths``, torchvision layout).

    ``stem``: ``"7x7"`` (7x7/2 conv), ``"3x3"`` (3x3/1 conv, phalanx stage 3) or
    ``"3x3/2"`` (3x3/2 conv: half the resolution at a ninth of the 7x7's cost, cpu profile);
    ``max_pool``: the 3x3/2 max-pool after the stem (phalanx removes it).
    Stage ``s`` has ``width * 2**(s-1)`` channels.
    """
    depths = _validate(width, depths)
    bn = TORCH_BN if bn is None else bn
    inputs = x
    if stem == "7x7":
        x = conv2d(x, width, 7, "conv0", strides=2)
    elif stem in ("3x3", "3x3/2"):
        x = conv2d(x, width, 3, "conv0", strides=1 if stem == "3x3" else 2)
    else:
        raise ValueError(f"stem must be '7x7', '3x3' or '3x3/2', got {stem!r}")
    x = batch_norm(x, "bn0", bn)
    x = stem_out = layers.Activation("relu", name="relu0")(x)
    if max_pool:
        x = layers.ZeroPadding2D(1, name="pooling0_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pooling0")(x)

    stages: list[Any] = []
    hooked: set[str] = set()
    for s, depth in enumerate(depths, start=1):
        filters = width * 2 ** (s - 1)
        for u in range(1, depth + 1):
            strides = 2 if (u == 1 and s > 1) else 1
            x = _basic_unit(x, filters, strides, f"stage{s}_unit{u}", bn)
        if stage_hook is not None:
            before = _upstream_layer_names(x)
            x = stage_hook(x, s)
            hooked |= _upstream_layer_names(x) - before
        stages.append(x)
    skips = [stem_out, *stages[:3]]
    names = _own_layer_names(inputs, stages, hooked)
    return EncoderFeatures(skips=skips, deepest=stages[-1], stages=stages, layer_names=names)


def resnext50(
    x: Any,
    *,
    width: int = 64,
    depths: Sequence[int] = FULL_DEPTHS,
    cardinality: int = 32,
    input_bn: bool = True,
    stage_hook: StageHook | None = None,
    bn: dict[str, float] | None = None,
) -> EncoderFeatures:
    """ResNeXt50 (32x4d) encoder: bottleneck units ``depths``, grouped 3x3 convolutions.

    ``input_bn``: a scale-free BatchNorm on the raw input (``bn_data``, the b.e.s. "BN as
    first layer" preprocessing). Stage ``s`` has ``2 * width * 2**(s-1)`` bottleneck and
    twice as many output channels (256..2048 at ``width=64``).
    Skips: ``relu0`` and ``stage{2,3,4}_unit1_relu1``, as in the original U-Net.
    """
    depths = _validate(width, depths)
    bn = RESNEXT_BN if bn is None else bn
    inputs = x
    if input_bn:
        x = batch_norm(x, "bn_data", bn, scale=False)
    x = conv2d(x, width, 7, "conv0", strides=2)
    x = batch_norm(x, "bn0", bn)
    x = stem_out = layers.Activation("relu", name="relu0")(x)
    x = layers.ZeroPadding2D(1, name="pooling0_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pooling0")(x)

    stages: list[Any] = []
    starts: list[Any] = []
    hooked: set[str] = set()
    for s, depth in enumerate(depths, start=1):
        filters = 2 * width * 2 ** (s - 1)
        for u in range(1, depth + 1):
            strides = 2 if (u == 1 and s > 1) else 1
            x, start = _bottleneck_unit(x, filters, strides, cardinality, f"stage{s}_unit{u}", bn)
            if u == 1:
                starts.append(start)
        if stage_hook is not None:
            before = _upstream_layer_names(x)
            x = stage_hook(x, s)
            hooked |= _upstream_layer_names(x) - before
        stages.append(x)
    skips = [stem_out, *starts[1:]]
    names = _own_layer_names(inputs, stages, hooked)
    return EncoderFeatures(skips=skips, deepest=stages[-1], stages=stages, layer_names=names)


EncoderFn = Callable[..., EncoderFeatures]

ENCODERS: dict[str, EncoderFn] = {"resnet34": resnet34, "resnext50": resnext50}


def get_encoder(name: str) -> EncoderFn:
    """The encoder function registered under ``name``."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; choose from {sorted(ENCODERS)}") from None


def build_encoder_model(
    name: str,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    weights_path: str | os.PathLike[str] | None = None,
    **options: Any,
) -> keras.Model:
    """A standalone encoder ``keras.Model`` (input -> deepest feature), e.g. to save or
    convert encoder weights; layer names are those used inside the U-Nets. With
    ``weights_path`` the encoder layers are loaded by name (:func:`load_encoder_weights`).
    """
    inp = keras.Input(input_shape, name="image")
    feats = get_encoder(name)(inp, **options)
    model = keras.Model(inp, feats.deepest, name=f"{name}_encoder")
    if weights_path is not None:
        load_encoder_weights(model, weights_path, feats.layer_names)
    return model


def save_encoder_weights(
    model: keras.Model,
    path: str | os.PathLike[str],
    layer_names: Iterable[str] | None = None,
) -> int:
    """Write the weights of ``layer_names`` (default: every layer with weights) of ``model``
    to a by-name ``.weights.h5`` file (groups ``layers/<layer name>/vars/<i>``).

    Keras 3's own ``save_weights`` keys layers by creation order, not by name, so use this
    (or a whole ``.keras`` model) to move encoder weights between networks. Returns the
    number of layers written.
    """
    import h5py

    names = [lay.name for lay in model.layers] if layer_names is None else list(layer_names)
    written = 0
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(target, "w") as fh:
        fh.attrs["saltseg_by_name"] = 1
        for name in names:
            layer = model.get_layer(name)
            if not layer.weights:
                continue
            group = fh.create_group(f"layers/{name}/vars")
            for i, w in enumerate(layer.weights):
                group.create_dataset(str(i), data=np.asarray(w))
            written += 1
    return written


def _read_h5(path: Path) -> dict[str, list[np.ndarray]]:
    """By-name weights from a saltseg ``.weights.h5`` (Keras 2 files: :func:`_load_mapped`)."""
    import h5py

    found: dict[str, list[np.ndarray]] = {}
    with h5py.File(path, "r") as fh:
        if "saltseg_by_name" not in fh.attrs:
            raise EncoderWeightsError(
                f"{path}: a Keras 3 model.save_weights() file keys layers by creation order, "
                "not by name; write encoder weights with nets.encoders.save_encoder_weights "
                "or pass a whole .keras model"
            )
        for name, group in fh["layers"].items():
            vars_ = group["vars"]
            found[name] = [np.asarray(vars_[k]) for k in sorted(vars_, key=int)]
    return found


def _read_keras(path: Path) -> dict[str, list[np.ndarray]]:
    """By-name weights of every layer of a saved ``.keras`` model (nested models too)."""
    source = keras.models.load_model(path, compile=False)
    out: dict[str, list[np.ndarray]] = {}
    stack: list[Any] = [source]
    while stack:
        model = stack.pop()
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                stack.append(layer)
            elif layer.weights:
                out.setdefault(layer.name, [np.asarray(w) for w in layer.get_weights()])
    return out


def _read_weights_file(path: Path) -> dict[str, list[np.ndarray]]:
    """Weights by layer name from a ``.weights.h5``/``.h5`` or ``.keras`` file."""
    if path.suffix == ".h5":
        return _read_h5(path)
    if path.suffix == ".keras":
        return _read_keras(path)
    raise EncoderWeightsError(f"{path}: encoder weights must be a .weights.h5 or .keras file")


# ImageNet statistics of torchvision's encoders, on 0-255 inputs (for an input BatchNorm).
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def torchvision_source_of(name: str) -> str | None:
    """Our encoder layer -> torchvision ``resnet34`` / ``resnext50_32x4d`` state_dict prefix."""
    fixed = {"conv0": "conv1", "bn0": "bn1", "bn_data": "bn_data"}  # bn_data: see _load_mapped
    if name in fixed:
        return fixed[name]
    m = re.fullmatch(r"stage(\d)_unit(\d+)_(conv[123]|bn[123]|sc|sc_bn)", name)
    if m is None:
        return None
    part = {"sc": "downsample.0", "sc_bn": "downsample.1"}.get(m[3], m[3])
    return f"layer{m[1]}.{int(m[2]) - 1}.{part}"


def _keras2_source_of(model: keras.Model, source: dict[str, np.ndarray]) -> Callable:
    """Keras 2 ImageNet files: same names; a grouped conv from its per-group convs
    ``<name>_<c>`` (the classification_models ResNeXt) unless stored whole."""

    def source_of(name: str) -> str | tuple[str, ...]:
        groups = int(getattr(model.get_layer(name), "groups", 1))
        if groups > 1 and f"{name}/kernel" not in source:
            return tuple(f"{name}_{c}" for c in range(groups))
        return name

    return source_of


def _is_keras2(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            root = fh.get("model_weights", fh)
            return "layer_names" in root.attrs or "layer_names0" in root.attrs
    except OSError:
        return False


def _load_mapped(model: keras.Model, path: Path, layer_names: Iterable[str]) -> int:
    """A torchvision state_dict (``.pth``, ``.safetensors``) or a Keras 2 HDF5 ImageNet
    file, mapped onto the encoder layers (:func:`saltseg.nets.transfer.transfer`).

    A stem whose kernel differs from the file's (phalanx v5's 3x3 ``conv0``) stays random,
    as in the original; ``bn_data`` (ResNeXt input BatchNorm), absent from torchvision files,
    is set to torchvision's ImageNet normalisation of 0-255 inputs."""
    from saltseg.core.errors import DataError
    from saltseg.data.weights_io import read_keras2_h5, read_weights
    from saltseg.nets.transfer import transfer

    names = [n for n in layer_names if model.get_layer(n).weights]
    try:
        if path.suffix.lower() in (".h5", ".hdf5"):
            source = read_keras2_h5(path)
            report = transfer(
                model, source, _keras2_source_of(model, source), "keras2", path, names
            )
            return report.layers
        source = read_weights(path)
        stem = source.get("conv1.weight")
        ours = tuple(model.get_layer("conv0").kernel.shape[:2]) if "conv0" in names else None
        if ours is not None and stem is not None and tuple(stem.shape[2:]) != ours:
            names.remove("conv0")  # phalanx v5's 3x3 stem: random, as in the original
        if "bn_data" in names and "bn_data.running_mean" not in source:
            eps = float(model.get_layer("bn_data").epsilon)
            source = dict(source)
            source["bn_data.bias"] = np.zeros(3, np.float32)
            source["bn_data.running_mean"] = np.asarray(IMAGENET_MEAN, np.float32)
            source["bn_data.running_var"] = np.square(IMAGENET_STD).astype(np.float32) - eps
        report = transfer(model, source, torchvision_source_of, "torch", path, names)
        return report.layers
    except DataError as exc:
        raise EncoderWeightsError(str(exc)) from None


def load_encoder_weights(
    model: keras.Model,
    weights_path: str | os.PathLike[str],
    layer_names: Iterable[str],
) -> int:
    """Copy weights of the named encoder layers of ``model`` from ``weights_path``.

    Sources: a torchvision ``resnet34`` / ``resnext50_32x4d`` state_dict (``.pth``, ``.pt``,
    ``.safetensors``), a Keras 2 HDF5 ImageNet file (``resnext50_imagenet_1000_no_top.h5``),
    both mapped by :func:`_load_mapped`; or by name from a saltseg ``.weights.h5``
    (:func:`save_encoder_weights`) or a ``.keras`` model. Every encoder layer that has
    weights must be present in the file with matching shapes; otherwise
    :class:`EncoderWeightsError` lists what is missing or mismatched. Returns the number of
    layers loaded. Nothing is downloaded.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise EncoderWeightsError(f"encoder weights file not found: {path}")
    if path.suffix.lower() in (".pth", ".pt", ".safetensors") or (
        path.suffix.lower() in (".h5", ".hdf5") and _is_keras2(path)
    ):
        return _load_mapped(model, path, layer_names)
    try:
        stored = _read_weights_file(path)
    except EncoderWeightsError:
        raise
    except Exception as exc:  # unreadable / not a Keras file
        raise EncoderWeightsError(f"{path}: cannot read encoder weights ({exc})") from exc
    missing: list[str] = []
    mismatched: list[str] = []
    assignments: list[tuple[Any, list[np.ndarray]]] = []
    for name in layer_names:
        layer = model.get_layer(name)
        if not layer.weights:
            continue
        arrays = stored.get(name)
        if arrays is None:
            missing.append(name)
            continue
        want = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if want != got:
            mismatched.append(f"{name} (model {want}, file {got})")
            continue
        assignments.append((layer, arrays))
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} layers missing (e.g. {', '.join(missing[:5])})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (e.g. {'; '.join(mismatched[:3])})")
        raise EncoderWeightsError(f"{path} does not match the encoder: {'; '.join(parts)}")
    for layer, arrays in assignments:
        layer.set_weights(arrays)
    return len(assignments)
