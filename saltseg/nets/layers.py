"""Building blocks any model family can use (Keras 3, backend-agnostic).

Every helper is functional: it takes a symbolic tensor and a ``name`` prefix, creates
explicitly named ``keras.layers`` and returns the output tensor. Only ``keras.ops`` is used
for tensor maths, so the models run on any Keras backend.

Convolutions that stride use explicit symmetric zero padding followed by a ``valid``
convolution, as PyTorch and the original Keras encoders do (Keras ``same`` padding pads
asymmetrically for even inputs), so published weights map without a shift.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import layers, ops

# PyTorch BatchNorm2d defaults (eps 1e-5, momentum 0.1 == Keras momentum 0.9).
TORCH_BN: dict[str, float] = {"epsilon": 1e-5, "momentum": 0.9}
# Keras 2 BatchNormalization defaults (the original b.e.s. decoder).
KERAS_BN: dict[str, float] = {"epsilon": 1e-3, "momentum": 0.99}


def conv2d(
    x: Any,
    filters: int,
    kernel_size: int,
    name: str,
    *,
    strides: int = 1,
    use_bias: bool = False,
    groups: int = 1,
    activation: str | None = None,
) -> Any:
    """``kernel_size`` convolution with PyTorch-style symmetric padding (``k // 2``)."""
    pad = kernel_size // 2
    padding = "same"
    if strides > 1 and pad > 0:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    conv = GroupedConv2D if groups > 1 else layers.Conv2D
    return conv(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        groups=groups,
        activation=activation,
        name=name,
    )(x)


def _batch_norm_train(epsilon: float, out_dtype: str) -> Any:
    """Training-mode batch normalisation over all axes but the last, its gradient written
    out (see :class:`BatchNormalization`): ``f(x, gamma, beta) -> (y, mean, var)``."""

    @ops.custom_gradient
    def forward(x: Any, gamma: Any, beta: Any) -> Any:
        axes = tuple(range(len(x.shape) - 1))
        x32 = ops.cast(x, "float32")
        mean = ops.mean(x32, axis=axes)
        xc = x32 - mean
        var = ops.mean(ops.square(xc), axis=axes)
        inv = ops.rsqrt(var + epsilon)
        scale = gamma * inv
        y = ops.cast(xc * scale + beta, out_dtype)

        def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any, Any]:
            if upstream is None:  # TensorFlow: one upstream gradient per output
                upstream = args
            dy = upstream[0] if isinstance(upstream, list | tuple) else upstream
            dy32 = ops.cast(dy, "float32")
            n = ops.cast(ops.size(dy32) // ops.shape(dy32)[-1], "float32")
            dbeta = ops.sum(dy32, axis=axes)
            dot = ops.sum(dy32 * xc, axis=axes)
            dx = (dy32 - dbeta / n - xc * (dot * inv * inv / n)) * scale
            return ops.cast(dx, x.dtype), dot * inv, dbeta

        return (y, mean, var), grad

    return forward


@keras.saving.register_keras_serializable(package="saltseg")
class BatchNormalization(layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with a hand-written training gradient.

    It keeps the Keras class name, so that weight files of networks built with the Keras
    layer load (Keras names the saved variables after the class).

    Same variables, inference and moving statistics as the Keras layer; in training, with
    ``xc = x - mean``, ``inv = 1 / sqrt(var + eps)`` and ``N`` values per channel:

        y = gamma * xc * inv + beta
        dbeta = sum(dy),  dgamma = inv * sum(dy * xc)
        dx = gamma * inv * (dy - dbeta / N - xc * inv^2 * sum(dy * xc) / N)

    The automatic gradient of the Keras layer's moments and normalisation takes about
    twice the element-wise passes; on 2 CPU cores this makes the cpu profile's training
    step about 4% faster (docs/cpu-profile.md). Masks, renorm and synchronised
    statistics fall back to the Keras layer.
    """

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        last = self.axis in (-1, len(inputs.shape) - 1)
        special = mask is not None or self.renorm or self.synchronized
        if not (training and self.trainable and last) or special:
            return super().call(inputs, training=training, mask=mask)
        channels = (int(inputs.shape[-1]),)
        gamma = ops.cast(self.gamma, "float32") if self.scale else ops.ones(channels)
        beta = ops.cast(self.beta, "float32") if self.center else ops.zeros(channels)
        forward = _batch_norm_train(float(self.epsilon), self.compute_dtype)
        y, mean, var = forward(inputs, gamma, beta)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + ops.stop_gradient(mean) * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + ops.stop_gradient(var) * (1.0 - m))
        return y


def batch_norm(x: Any, name: str, bn: dict[str, float] | None = None, scale: bool = True) -> Any:
    """:class:`BatchNormalization` (ours) over channels with the given ``epsilon``/``momentum``."""
    opts = dict(TORCH_BN if bn is None else bn)
    return BatchNormalization(scale=scale, name=name, **opts)(x)


def conv_bn_act(
    x: Any,
    filters: int,
    kernel_size: int,
    name: str,
    *,
    strides: int = 1,
    activation: str = "relu",
    bn: dict[str, float] | None = None,
) -> Any:
    """Conv (no bias) -> BN -> activation; layers ``{name}_conv``, ``_bn``, ``_act``."""
    x = conv2d(x, filters, kernel_size, f"{name}_conv", strides=strides)
    x = batch_norm(x, f"{name}_bn", bn)
    return layers.Activation(activation, name=f"{name}_{activation}")(x)


def _has_gpu() -> bool:
    try:
        return bool(keras.distribution.list_devices("gpu"))
    except (ValueError, RuntimeError):
        return False


def split_groups(implementation: str, groups: int, has_gpu: Callable[[], bool]) -> bool:
    """Whether a grouped convolution runs as per-group slices (the CPU path) rather than
    TensorFlow's native grouped kernel (the GPU path; ``auto`` asks ``has_gpu``)."""
    if groups == 1 or implementation == "native":
        return False
    return implementation == "split" or not has_gpu()


@keras.saving.register_keras_serializable(package="saltseg")
class GroupedConv2D(layers.Conv2D):
    """``Conv2D`` with ``groups > 1`` and the same kernel layout, computed fast on CPUs.

    TensorFlow's native grouped convolution trains about 100x slower than a plain one on
    a CPU (its gradient has no fast kernel). With ``implementation="split"`` the input
    channels and the kernel are split into ``groups`` slices, each convolved on its own and
    concatenated: the same result and the same weights. ``"auto"`` (default) splits when no
    GPU is visible and uses the native kernel otherwise.
    """

    def __init__(self, *args: Any, implementation: str = "auto", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if implementation not in ("auto", "native", "split"):
            raise ValueError(f"implementation must be auto, native or split: {implementation!r}")
        self.implementation = implementation

    def _split(self) -> bool:
        return split_groups(self.implementation, self.groups, _has_gpu)

    def call(self, inputs: Any) -> Any:
        if not self._split():
            return super().call(inputs)
        axis = -1 if self.data_format == "channels_last" else 1
        xs = ops.split(inputs, self.groups, axis=axis)
        ks = ops.split(self.kernel, self.groups, axis=-1)
        y = ops.concatenate(
            [
                ops.conv(
                    x,
                    k,
                    strides=self.strides,
                    padding=self.padding,
                    dilation_rate=self.dilation_rate,
                    data_format=self.data_format,
                )
                for x, k in zip(xs, ks, strict=True)
            ],
            axis=axis,
        )
        if self.use_bias:
            shape = (1, 1, 1, self.filters) if axis == -1 else (1, self.filters, 1, 1)
            y = ops.add(y, ops.reshape(self.bias, shape))
        if self.activation is not None:
            y = self.activation(y)
        return y

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "implementation": self.implementation}


@keras.saving.register_keras_serializable(package="saltseg")
class BilinearUpsample(layers.Layer):
    """Integer-factor bilinear up-sampling with ``align_corners=True`` semantics.

    This is PyTorch's ``F.upsample(..., mode="bilinear", align_corners=True)``, which the
    phalanx networks use; ``keras.layers.UpSampling2D`` implements the half-pixel variant.
    Written as two matrix products with constant weights, so it needs static spatial sizes.
    """

    def __init__(self, factor: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = int(factor)

    @staticmethod
    def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if n_in == 1:
            zeros = np.zeros(n_out, dtype="int32")
            return zeros, zeros, np.zeros(n_out, dtype="float32")
        pos = np.arange(n_out, dtype="float64") * (n_in - 1) / (n_out - 1)
        lo = np.clip(np.floor(pos).astype("int32"), 0, n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1).astype("int32")
        return lo, hi, (pos - lo).astype("float32")

    def _matrix(self, n_in: int) -> np.ndarray:
        """``(n_in, n_in * factor)`` interpolation weights: output ``j`` mixes two inputs."""
        n_out = n_in * self.factor
        lo, hi, w = self._taps(n_in, n_out)
        m = np.zeros((n_in, n_out), dtype="float32")
        cols = np.arange(n_out)
        np.add.at(m, (lo, cols), 1.0 - w)
        np.add.at(m, (hi, cols), w)
        return m

    def _resize_axis(self, x: Any, axis: int, n_in: int) -> Any:
        # a matrix product (not a gather): its gradient is another matrix product, where a
        # gather's is a scatter-add, slower on CPU
        m = ops.cast(ops.convert_to_tensor(self._matrix(n_in)), x.dtype)
        spec = "bhwc,hH->bHwc" if axis == 1 else "bhwc,wW->bhWc"
        return ops.einsum(spec, x, m)

    def call(self, inputs: Any) -> Any:
        h, w = inputs.shape[1], inputs.shape[2]
        if h is None or w is None:
            raise ValueError(f"{self.name}: BilinearUpsample needs static spatial dimensions")
        if self.factor == 1:
            return inputs
        x = self._resize_axis(inputs, 1, int(h))
        return self._resize_axis(x, 2, int(w))

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        b, h, w, c = input_shape
        return (
            b,
            None if h is None else h * self.factor,
            None if w is None else w * self.factor,
            c,
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


def upsample(x: Any, factor: int, name: str, dtype: str | None = None) -> Any:
    """Bilinear (align-corners) up-sampling by an integer ``factor`` (``dtype``: its policy)."""
    return BilinearUpsample(factor, name=name, dtype=dtype)(x)


@dataclass(frozen=True)
class SCSE:
    """Concurrent spatial and channel squeeze-and-excitation (Roy et al., 2018).

    Channel branch: GAP -> dense ``C // reduction`` ReLU -> dense ``C`` sigmoid -> ``x * g``.
    Spatial branch: 1x1 conv with sigmoid to ``spatial_filters`` maps (``None``: ``C`` maps,
    which is what the original b.e.s. code does); with ``spatial_gate`` the maps multiply
    ``x``, without it the bare map is used (what the original phalanx code does). The two
    branches are added (with broadcasting for a one-channel map).
    """

    reduction: int = 2
    spatial_filters: int | None = 1
    spatial_bias: bool = True
    spatial_gate: bool = True

    def __call__(self, x: Any, name: str) -> Any:
        channels = int(x.shape[-1])
        g = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_cse_pool")(x)
        g = layers.Dense(max(1, channels // self.reduction), "relu", name=f"{name}_cse_fc1")(g)
        g = layers.Dense(channels, "sigmoid", name=f"{name}_cse_fc2")(g)
        cse = layers.Multiply(name=f"{name}_cse_mul")([x, g])
        n_maps = channels if self.spatial_filters is None else self.spatial_filters
        sse = layers.Conv2D(
            n_maps,
            1,
            activation="sigmoid",
            use_bias=self.spatial_bias,
            name=f"{name}_sse_conv",
        )(x)
        if self.spatial_gate:
            sse = layers.Multiply(name=f"{name}_sse_mul")([x, sse])
        return layers.Add(name=f"{name}_add")([cse, sse])


def scse(x: Any, name: str, **options: Any) -> Any:
    """Apply :class:`SCSE` with the given options (see there) to ``x``."""
    return SCSE(**options)(x, name)
