"""Weights of another framework's network assigned to ours, strictly, by a name map.

A family's map (``<family>/weights_map.py``) says, for each of our layers with weights, which
layer(s) of the original network hold them: :data:`SourceOf`. :func:`transfer` then takes
every variable of our network from the source arrays (read by :mod:`saltseg.data.weights_io`)
with the layout change its layer type and the source's convention need:

========================  ==========================  ==================================
our layer                 ``torch`` source            ``keras2`` source
========================  ==========================  ==================================
Conv2D (grouped too)      ``.weight`` OIHW -> HWIO    ``/kernel`` (several: the per-group
                          (grouped: O,I/g,H,W)        convs, concatenated on the output)
Conv2DTranspose           ``.weight`` IOHW -> HWOI    ``/kernel``
Dense                     ``.weight`` (O,I) or 1x1    ``/kernel``
                          conv (O,I,1,1) -> (I,O)
BatchNormalization        ``weight bias               ``gamma beta moving_mean
                          running_mean running_var``  moving_variance``
bias                      ``.bias``                   ``/bias``
========================  ==========================  ==================================

Strict: every variable of our network is assigned exactly once, every shape is checked,
no source array feeds two variables, and nothing is assigned unless everything matches.
The source arrays nothing used are listed in the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from saltseg.core.errors import DataError

if TYPE_CHECKING:  # keras is imported where it is used: the registry entries stay cheap
    import keras

Convention = Literal["torch", "keras2"]
SourceOf = Callable[[str], "str | tuple[str, ...] | None"]
"""Our layer name -> the source layer's key prefix (several: concatenated), or None."""

_BN_NAMES = {
    "torch": ("weight", "bias", "running_mean", "running_var"),
    "keras2": ("gamma", "beta", "moving_mean", "moving_variance"),
}


@dataclass
class TransferReport:
    """What :func:`transfer` assigned and what it left."""

    origin: str
    assigned: int = 0
    layers: int = 0
    unused: list[str] = field(default_factory=list)

    def summary(self, show: int = 6) -> str:
        text = f"{self.origin}: {self.assigned} arrays into {self.layers} layers"
        if not self.unused:
            return f"{text}, every source array used"
        groups = sorted({k.split(".")[0].split("/")[0] for k in self.unused})
        return f"{text}; {len(self.unused)} unused source arrays (under {', '.join(groups[:show])})"


def _key(prefix: str, name: str, convention: Convention) -> str:
    return f"{prefix}.{name}" if convention == "torch" else f"{prefix}/{name}"


def _kernel(layer: Any, value: np.ndarray, convention: Convention) -> np.ndarray:
    """A source kernel in our layout."""
    import keras

    if convention == "keras2":
        return value
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return value.transpose(2, 3, 1, 0)
    if isinstance(layer, keras.layers.Dense):
        if value.ndim == 4:
            value = value[:, :, 0, 0]
        return value.T
    return value.transpose(2, 3, 1, 0)


def _layer_sources(layer: Any, prefixes: tuple[str, ...], convention: Convention) -> list[Any]:
    """For each variable of ``layer``: ``(keys, convert)``; ``convert(arrays) -> value``."""
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        names = _BN_NAMES[convention]
        wanted = [names[0]] if layer.scale else []
        wanted += [names[1]] if layer.center else []
        wanted += [names[2], names[3]]
        return [((_key(prefixes[0], n, convention),), lambda a: a[0]) for n in wanted]
    conv_like = (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense)
    if not isinstance(layer, conv_like):
        raise DataError(f"no weight rule for layer {layer.name} ({type(layer).__name__})")
    kname = "weight" if convention == "torch" else "kernel"
    kernel_keys = tuple(_key(p, kname, convention) for p in prefixes)
    out = [(kernel_keys, lambda a: np.concatenate([_kernel(layer, v, convention) for v in a], -1))]
    if layer.use_bias:
        bias_keys = tuple(_key(p, "bias", convention) for p in prefixes)
        out.append((bias_keys, lambda a: np.concatenate(a, 0)))
    return out


def transfer(
    model: keras.Model,
    source: Mapping[str, np.ndarray],
    source_of: SourceOf,
    convention: Convention,
    origin: str | Path,
    layers: Iterable[str] | None = None,
) -> TransferReport:
    """Assign ``model``'s weights from ``source`` (see the module docstring); a
    :class:`DataError` naming ``origin`` lists every missing key and shape mismatch.
    ``layers``: only these layers (e.g. an encoder's), else every layer with weights."""
    report = TransferReport(str(origin))
    plan: list[tuple[Any, np.ndarray]] = []
    problems: list[str] = []
    used: dict[str, str] = {}
    wanted = None if layers is None else set(layers)
    for layer in model.layers:
        if not layer.weights or (wanted is not None and layer.name not in wanted):
            continue
        found = source_of(layer.name)
        if found is None:
            problems.append(f"{layer.name}: no source layer in the map")
            continue
        prefixes = (found,) if isinstance(found, str) else tuple(found)
        rules = _layer_sources(layer, prefixes, convention)
        if len(rules) != len(layer.weights):
            problems.append(f"{layer.name}: {len(layer.weights)} variables, {len(rules)} rules")
            continue
        report.layers += 1
        for var, (keys, convert) in zip(layer.weights, rules, strict=True):
            missing = [k for k in keys if k not in source]
            if missing:
                problems.append(f"{layer.name}: missing key {missing[0]}")
                continue
            for k in keys:
                if k in used:
                    problems.append(f"{layer.name}: key {k} already used by {used[k]}")
                used[k] = layer.name
            try:
                value = np.asarray(convert([source[k] for k in keys]), dtype=np.float32)
            except ValueError as exc:
                problems.append(f"{layer.name}: {keys[0]}: cannot convert ({exc})")
                continue
            if tuple(value.shape) != tuple(var.shape):
                shapes = ", ".join(str(tuple(source[k].shape)) for k in keys[:2])
                problems.append(
                    f"{layer.name}/{var.name}: wrong shape: ours {tuple(var.shape)}, "
                    f"{keys[0]} gives {tuple(value.shape)} (source {shapes})"
                )
                continue
            plan.append((var, value))
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; ... ({len(problems)} in all)" if len(problems) > 5 else ""
        )
        raise DataError(f"{origin}: does not fit {model.name}: {shown}")
    for var, value in plan:
        var.assign(value)
    report.assigned = len(plan)
    report.unused = [k for k in source if k not in used]
    return report


@dataclass(frozen=True)
class OriginalFile:
    """One original weights file and where it goes in our layout (``fold_<k>/<phase>/``
    ``best`` or ``snapshot_<index>``), with its share of its fold's mean."""

    path: Path
    fold: int
    phase: str
    slot: str
    weight: float
    label: str


@dataclass(frozen=True)
class OriginalWeights:
    """A family's published weights (registry group ``weight_maps``): how to find the
    files, read them and map them onto our network.

    ``files(folder)`` lists every file of the published layout (a :class:`DataError` names
    what is missing); ``recipe``: our stage recipe that predicts with them (and
    ``variants``: scSE variant -> its recipe); ``source_of``, ``convention``: the map.
    """

    family: str
    recipe: str
    convention: Convention
    source_of: SourceOf
    files: Callable[[Path], list[OriginalFile]]
    variants: Mapping[str, str] = field(default_factory=dict)
    default_variant: str = ""
    description: str = ""


def family_folder(original: Path, family: str) -> Path:
    """``ORIGINAL/<family>/weights`` (the unzipped original layout) when present, else
    ``ORIGINAL`` itself (a folder holding one family's files)."""
    nested = original / family / "weights"
    return nested if nested.is_dir() else original
