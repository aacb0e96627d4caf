"""The b.e.s. decoder block (Keras 3 layers only)."""

from __future__ import annotations

from typing import Any

from keras import layers

from saltseg.nets.layers import KERAS_BN, SCSE, batch_norm, conv2d


def transpose_decoder_block(
    x: Any,
    skip: Any | None,
    filters: int,
    name: str,
    attention: SCSE,
    bn: dict[str, float] | None = None,
) -> Any:
    """b.e.s. decoder block: 4x4/2 transposed conv -> BN -> ReLU -> [concat skip] ->
    3x3 conv -> BN -> ReLU -> scSE."""
    bn = KERAS_BN if bn is None else bn
    x = layers.Conv2DTranspose(
        filters, 4, strides=2, padding="same", use_bias=False, name=f"{name}_upsample"
    )(x)
    x = batch_norm(x, f"{name}_bn1", bn)
    x = layers.Activation("relu", name=f"{name}_relu1")(x)
    if skip is not None:
        x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    x = conv2d(x, filters, 3, f"{name}_conv2")
    x = batch_norm(x, f"{name}_bn2", bn)
    x = layers.Activation("relu", name=f"{name}_relu2")(x)
    return attention(x, f"{name}_scse")
