"""A network from its spec, its weights, and its probabilities at 101x101.

Training's validation and self-labelling use these too: prediction never imports training.
"""

from __future__ import annotations

import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np

from saltseg.config.precision import dtype_policy
from saltseg.core.atomic import atomic_path
from saltseg.core.errors import OutputError
from saltseg.data.adapters import Adapter
from saltseg.infer.prefetch import prefetch
from saltseg.nets.zoo import ModelSpec


def build_model(
    spec: ModelSpec,
    bn_momentum: float | None = None,
    policy: str = "float32",
    options: Mapping[str, Any] | None = None,
) -> keras.Model:
    """The spec's network with a logits head (losses and prediction apply the sigmoid).

    ``bn_momentum`` replaces every BatchNorm's moving-average momentum: b.e.s. keeps Keras
    2's 0.99, whose statistics need many hundred steps to settle, too many for a short run.
    ``policy``: the Keras dtype policy of the layers (``saltseg.config.precision``); the
    weights are float32 whatever it is. ``options``: the recipe's ``model_options``
    (builder keyword arguments, e.g. ``dropout``).
    """
    with dtype_policy(policy):
        model = spec.build(**{**dict(options or {}), **spec.logits_overrides})
    if bn_momentum is not None:
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = bn_momentum
    return model


def _array_crcs(arrays: Iterable[np.ndarray]) -> Counter[tuple[tuple[int, ...], str, int]]:
    """Shape, dtype and CRC-32 of each array's bytes (an order-free multiset)."""
    return Counter(
        (a.shape, a.dtype.str, zlib.crc32(np.ascontiguousarray(a).tobytes())) for a in arrays
    )


def _weights_file_matches(model: keras.Model, path: Path) -> None:
    """The written ``.weights.h5`` holds every array of the model, byte for byte (it may
    hold more state, e.g. compiled metrics)."""
    found: list[np.ndarray] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda _, v: found.append(v[()]) if isinstance(v, h5py.Dataset) else None)
    missing = _array_crcs(np.asarray(w) for w in model.get_weights()) - _array_crcs(found)
    if missing:
        raise OutputError(f"{path}: {missing.total()} weight array(s) do not read back as written")


def save_weights(model: keras.Model, path: Path) -> None:
    """``model.save_weights`` through a temporary file, fsynced and read back (count,
    shapes and CRC of every array) before it replaces ``path``."""
    with atomic_path(path, verify=lambda tmp: _weights_file_matches(model, tmp)) as tmp:
        model.save_weights(tmp)


def load_model_weights(model: keras.Model, path: Path) -> None:
    """Load a ``.weights.h5`` file's model weights, leaving the (fresh) optimizer alone."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)


def predict_probabilities(
    model: keras.Model | Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    adapter: Adapter,
    output: str | None,
    logits: bool,
    batch_size: int = 32,
    chunk: int = 256,
    flip_tta: bool = False,
) -> np.ndarray:
    """Probabilities at 101x101 for uint8 tiles ``(N, 101, 101)``, streamed in chunks.

    ``model``: a Keras model, or a backend's forward function
    (:class:`saltseg.infer.backends.Forward`: the main output already chosen). The next
    chunk is adapted in a thread while this one runs through the network.
    """
    out = np.empty(images.shape, dtype=np.float32)
    starts = range(0, len(images), chunk)
    adapted = prefetch((lo, adapter.forward_images(images[lo : lo + chunk])) for lo in starts)
    for lo, x in adapted:
        prob = _forward(model, x, output, logits, batch_size)
        if flip_tta:
            flipped = _forward(model, x[:, :, ::-1], output, logits, batch_size)[:, :, ::-1]
            prob = 0.5 * (prob + flipped)
        out[lo : lo + chunk] = adapter.inverse(prob)
    return out


def main_output(spec: ModelSpec, model: keras.Model) -> str | None:
    """The output to predict with: the spec's main one for a multi-output network."""
    return spec.main_output if len(model.output_names) > 1 else None


def _forward(
    model: keras.Model | Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    output: str | None,
    logits: bool,
    bs: int,
) -> np.ndarray:
    if isinstance(model, keras.Model):
        pred = model.predict(np.ascontiguousarray(x), batch_size=bs, verbose=0)
    else:
        pred = model(np.ascontiguousarray(x))
    if isinstance(pred, dict):
        pred = pred[output] if output else next(iter(pred.values()))
    elif isinstance(pred, list | tuple):
        names = list(model.output_names)
        pred = pred[names.index(output)] if output in names else pred[0]
    pred = np.asarray(pred, dtype=np.float32)
    if logits:
        pred = 1.0 / (1.0 + np.exp(-np.clip(pred, -60, 60)))
    return pred
