"""Where a network's forward passes run: Keras (float32 or mixed), OpenVINO, ONNX Runtime.

A :class:`Forward` maps a batch of adapted inputs ``(N, H, W, C)`` float32 to the logits of
the network's main output, float32. ``keras`` is the reference (float32 Keras/TensorFlow);
``keras-bf16`` runs Keras in the machine's mixed policy (bfloat16 compute where the CPU has
it natively; on a GPU bfloat16 or float16 by its generation, ``config.precision``), float32
heads; ``openvino`` and ``onnxruntime`` run exports of the float32 network
(:mod:`saltseg.infer.exports`, cached beside the weights). OpenVINO computes in bfloat16 on
CPUs that have it (its default), ONNX Runtime in float32. ``auto`` is resolved by
:mod:`saltseg.infer.choice` from the bench's recorded decision. Both runtimes are optional
packages, imported only when used.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np

from saltseg.config.precision import gpu_capability, prediction_xla, resolve_precision
from saltseg.infer.exports import cached_export

BACKENDS = ("keras", "keras-bf16", "openvino", "onnxruntime")
"""Every backend a flag can name (plus ``auto``)."""
_MODULES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}


class Forward(Protocol):
    """Logits ``(N, H, W, 1)`` float32 of the main output for inputs ``(N, H, W, C)``."""

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


def available(backend: str) -> bool:
    """Whether ``backend``'s runtime is installed (Keras always is)."""
    module = _MODULES.get(backend)
    return module is None or importlib.util.find_spec(module) is not None


def keras_policy(backend: str) -> str:
    """The Keras dtype policy a backend builds its network in (exports: float32)."""
    if backend != "keras-bf16":
        return "float32"
    mixed = resolve_precision("auto")
    return mixed if mixed != "float32" else "mixed_bfloat16"


def main_model(model: keras.Model, output: str | None) -> keras.Model:
    """``model`` reduced to its main output (the one prediction uses), sharing its layers."""
    if output is None or len(model.outputs) == 1:
        return model
    return keras.Model(model.inputs, model.outputs[list(model.output_names).index(output)])


def _batches(fn: Callable[[np.ndarray], Any], x: np.ndarray, batch: int) -> np.ndarray:
    out = [
        np.asarray(fn(np.ascontiguousarray(x[lo : lo + batch]))) for lo in range(0, len(x), batch)
    ]
    return np.concatenate(out).astype(np.float32, copy=False)


class KerasForward:
    """The Keras model itself, batch by batch (XLA-compiled where it helps: on a GPU)."""

    def __init__(self, model: keras.Model, output: str | None, batch: int) -> None:
        self.model = main_model(model, output)
        self.batch = batch
        self._fn: Callable[[np.ndarray], Any] = self.model.predict_on_batch
        if prediction_xla(gpu_capability() is not None):
            import tensorflow as tf

            self._fn = tf.function(lambda x: self.model(x, training=False), jit_compile=True)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _batches(self._fn, x, self.batch)


class OpenVINOForward:
    """An OpenVINO IR compiled for the CPU (``threads``: its inference threads)."""

    def __init__(self, xml: Path, batch: int, threads: int | None = None) -> None:
        import openvino as ov

        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = ov.Core().compile_model(str(xml), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.batch = batch

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.request.infer({0: x})[self.compiled.outputs[0]]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _batches(self._run, x, self.batch)


class OnnxForward:
    """An ONNX model in ONNX Runtime's CPU provider (``threads``: its intra-op threads)."""

    def __init__(self, path: Path, batch: int, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.batch = batch

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x})[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _batches(self._run, x, self.batch)


def export_model(model: keras.Model, output: str | None, backend: str, path: Path) -> None:
    """Write ``model``'s main output as ``backend``'s model file ``path``."""
    fmt = {"openvino": "openvino", "onnxruntime": "onnx"}[backend]
    main_model(model, output).export(str(path), format=fmt, verbose=False)


def make_forward(
    backend: str,
    model: keras.Model,
    output: str | None,
    weights: Path | None,
    batch: int,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> Forward:
    """The :class:`Forward` of ``model`` (its weights loaded from ``weights``) on ``backend``.

    ``model`` must be built in :func:`keras_policy` ``(backend)``; an export backend needs
    ``weights``, the file the cache is keyed by.
    """
    if backend in ("keras", "keras-bf16"):
        return KerasForward(model, output, batch)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (auto, {', '.join(BACKENDS)})")
    if not available(backend):
        raise ImportError(f"backend {backend} needs the {_MODULES[backend]} package")
    if weights is None:
        raise ValueError(f"backend {backend} runs an export of a weights file: give weights")
    path = cached_export(weights, backend, lambda p: export_model(model, output, backend, p), log)
    if backend == "openvino":
        return OpenVINOForward(path, batch, threads)
    return OnnxForward(path, batch, threads)
