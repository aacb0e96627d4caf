"""The phalanx networks: U-ResNet34 with scSE, a Feature Pyramid Attention centre and a
hypercolumn head (``Res34Unetv4``, ``Res34Unetv3``, ``Res34Unetv5`` in the original).

Common structure (``width=64``; channels scale with ``width``):

- input ``image``: 3 channels ``[image (0-1), row ramp 0..1, image * ramp]``;
- ResNet34 encoder without the first max-pool; scSE (channel reduction 4) after each
  stage ``encode{2..5}_scse``;
- centre: FPA (512 -> 256) then 2x2 max-pool;
- decoder blocks ``decode5..decode2``: 2x2/2 transposed conv (32) + 1x1 skip conv (32),
  concat, BN, ReLU, scSE (reduction 16) -> 64 channels;
- ``v4``/``v3`` (256 input, 7x7/2 stem) add ``decode1``: bilinear x2, two 3x3 conv-BN-ELU
  (32, 64), scSE; ``v5`` (128 input, 3x3/1 stem) stops at ``decode2``;
- hypercolumn: every decoder output up-sampled (bilinear, align corners) to full size and
  concatenated (320 / 256 channels).

Heads: ``v4``: 3x3 conv 64 + ELU -> 1x1 conv (``logits``). ``v5``: SpatialDropout 0.4 ->
3x3 conv 32 + ELU -> 1x1 conv (``logits``). ``v3`` (deep supervision): dropout 0.4 on the
GAP of the deepest features -> dense 64 ELU -> dense 1 (``empty``: logit that the mask is
empty); SpatialDropout 0.4 on the hypercolumn -> 3x3 conv-BN-ELU 64 -> 1x1 conv (``pixel``:
logits meant for non-empty images); the 64-channel pixel features concatenated with the
64-d image features broadcast over the image -> 3x3 conv 64 ELU -> 1x1 conv (``fused``).

As in the original at the competition, the scSE spatial branch is by default the bare
sigmoid map (not multiplied by the input) added to the channel-gated features;
``spatial_gate=True`` builds the later published code's ``x * map`` (the two have the same
weights; which one the published weights need is settled by ``saltseg weights check``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import keras
from keras import layers

from phalanx.blocks import (
    feature_pyramid_attention,
    fuse_decoder_block,
    hypercolumn,
    upsample_decoder_block,
)
from saltseg.config.precision import HEAD_DTYPE
from saltseg.nets.encoders import FULL_DEPTHS, load_encoder_weights, resnet34
from saltseg.nets.layers import SCSE, TORCH_BN, conv_bn_act, upsample

ENCODER_SCSE = SCSE(reduction=4, spatial_filters=1, spatial_bias=False, spatial_gate=False)
DECODER_SCSE = SCSE(reduction=16, spatial_filters=1, spatial_bias=False, spatial_gate=False)


@dataclass(frozen=True)
class Variant:
    """Fixed settings of a phalanx network variant."""

    input_size: int
    stem: str
    decode1: bool
    dropout: float
    deep_supervision: bool


VARIANTS: dict[str, Variant] = {
    "v4": Variant(256, "7x7", decode1=True, dropout=0.0, deep_supervision=False),
    "v3": Variant(256, "7x7", decode1=True, dropout=0.4, deep_supervision=True),
    "v5": Variant(128, "3x3", decode1=False, dropout=0.4, deep_supervision=False),
}


def build_phalanx(
    variant: str = "v4",
    width: int = 64,
    depths: Sequence[int] = FULL_DEPTHS,
    dropout: float | None = None,
    encoder_weights: str | os.PathLike[str] | None = None,
    input_size: int | None = None,
    stem: str | None = None,
    name: str | None = None,
    spatial_gate: bool = False,
) -> keras.Model:
    """Build a phalanx U-ResNet34 (``variant`` ``"v4"``, ``"v3"`` or ``"v5"``).

    ``dropout`` defaults to the variant's (0 for v4, 0.4 for v3/v5); ``input_size`` to 256
    (v4, v3) or 128 (v5), and must be a multiple of 32 (64 for a stride-2 stem).
    ``stem`` overrides the variant's (``"3x3/2"`` halves the resolution of the whole v5
    network: its head then works at half size and its logits are up-sampled x2, bilinear;
    the cpu profile's network). ``spatial_gate``: the scSE spatial branch gates the input
    (``x * map``) instead of being the bare map (module docstring). Outputs: ``logits``
    (v4, v5) or ``fused``, ``pixel``, ``empty`` (v3), all logits.
    """
    try:
        spec = VARIANTS[variant]
    except KeyError:
        raise ValueError(
            f"unknown phalanx variant {variant!r}; choose from {sorted(VARIANTS)}"
        ) from None
    size = spec.input_size if input_size is None else int(input_size)
    stem = spec.stem if stem is None else stem
    multiple = 32 if stem == "3x3" else 64
    if size % multiple:
        raise ValueError(f"phalanx {variant}: input_size must be a multiple of {multiple}")
    rate = spec.dropout if dropout is None else float(dropout)
    bn = TORCH_BN
    enc_scse = replace(ENCODER_SCSE, spatial_gate=spatial_gate)
    dec_scse = replace(DECODER_SCSE, spatial_gate=spatial_gate)

    inputs = keras.Input((size, size, 3), name="image")
    enc = resnet34(
        inputs,
        width=width,
        depths=depths,
        stem=stem,
        max_pool=False,
        stage_hook=lambda t, s: enc_scse(t, f"encode{s + 1}_scse"),
        bn=bn,
    )
    e2, e3, e4, e5 = enc.stages

    f = feature_pyramid_attention(e5, 4 * width, "center_fpa", bn)
    f = layers.MaxPooling2D(2, name="center_pool")(f)

    d5 = fuse_decoder_block(f, e5, width, "decode5", dec_scse, bn)
    d4 = fuse_decoder_block(d5, e4, width, "decode4", dec_scse, bn)
    d3 = fuse_decoder_block(d4, e3, width, "decode3", dec_scse, bn)
    d2 = fuse_decoder_block(d3, e2, width, "decode2", dec_scse, bn)
    decoded = [d2, d3, d4, d5]
    if spec.decode1:
        d1 = upsample_decoder_block(d2, width // 2, width, "decode1", dec_scse, bn)
        decoded.insert(0, d1)
    hyper = hypercolumn(decoded, "hypercolumn")
    if rate > 0:
        hyper = layers.SpatialDropout2D(rate, name="hypercolumn_dropout")(hyper)

    if spec.deep_supervision:
        outputs = _deep_supervision_heads(hyper, e5, width, rate, bn)
    else:
        head_filters = width if spec.decode1 else max(1, width // 2)
        x = layers.Conv2D(head_filters, 3, padding="same", name="logit_conv", dtype=HEAD_DTYPE)(
            hyper
        )
        x = layers.Activation("elu", name="logit_elu", dtype=HEAD_DTYPE)(x)
        if int(x.shape[1]) == size:
            outputs = layers.Conv2D(1, 1, use_bias=False, name="logits", dtype=HEAD_DTYPE)(x)
        else:  # a stride-2 stem without decode1: up-sample the logits to the input size
            x = layers.Conv2D(1, 1, use_bias=False, name="logits_half", dtype=HEAD_DTYPE)(x)
            outputs = upsample(x, size // int(x.shape[1]), "logits", dtype=HEAD_DTYPE)

    model = keras.Model(inputs, outputs, name=name or f"phalanx_res34unet_{variant}")
    if encoder_weights is not None:
        load_encoder_weights(model, encoder_weights, enc.layer_names)
    return model


def _deep_supervision_heads(
    hyper: keras.KerasTensor, e5: keras.KerasTensor, width: int, rate: float, bn: dict
) -> dict[str, keras.KerasTensor]:
    """The v3 heads: ``fused`` and ``pixel`` segmentation logits, ``empty`` image logit."""
    size = int(hyper.shape[1])
    e = layers.GlobalAveragePooling2D(name="image_pool")(e5)
    if rate > 0:
        e = layers.Dropout(rate, name="image_dropout")(e)
    fuse_image = layers.Dense(width, activation="elu", name="fuse_image")(e)
    empty = layers.Dense(1, name="empty", dtype=HEAD_DTYPE)(fuse_image)

    fuse_pixel = conv_bn_act(hyper, width, 3, "fuse_pixel", activation="elu", bn=bn)
    pixel = layers.Conv2D(1, 1, use_bias=False, name="pixel", dtype=HEAD_DTYPE)(fuse_pixel)

    image_map = layers.Reshape((1, 1, width), name="fuse_image_map")(fuse_image)
    image_map = layers.UpSampling2D(size, name="fuse_image_broadcast")(image_map)
    fuse = layers.Concatenate(name="fuse")([fuse_pixel, image_map])
    x = layers.Conv2D(
        width, 3, padding="same", use_bias=False, name="logit_conv", dtype=HEAD_DTYPE
    )(fuse)
    x = layers.Activation("elu", name="logit_elu", dtype=HEAD_DTYPE)(x)
    fused = layers.Conv2D(1, 1, use_bias=False, name="fused", dtype=HEAD_DTYPE)(x)
    return {"fused": fused, "pixel": pixel, "empty": empty}
