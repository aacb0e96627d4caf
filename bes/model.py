"""The b.e.s. network: U-Net with a ResNeXt50 encoder and scSE decoder blocks.

Faithful to the original ``unet_resnext_50`` / ``unet_resnext_50_lovasz``:

- input: gray tile repeated to 3 channels, 0-255; a scale-free BatchNorm (``bn_data``) is
  the first layer instead of mean/std preprocessing;
- skips from the start of each encoder stage: ``relu0`` (1/2), ``stage2_unit1_relu1``
  (1/4), ``stage3_unit1_relu1`` (1/8), ``stage4_unit1_relu1`` (1/16);
- 5 decoder blocks ``decoder_stage{0..4}`` (transposed conv 4x4/2 -> BN -> ReLU -> concat
  skip -> conv 3x3 -> BN -> ReLU -> scSE) with 128, 64, 32, 16, 8 filters; the last block
  (full resolution) has no skip;
- the original scSE: channel SE with ``C/2`` hidden units, spatial SE as a 1x1 sigmoid conv
  with ``C`` output maps (sic) gating the input; branches added;
- head: SpatialDropout2D(0.2) -> 1x1 conv ``prediction`` (sigmoid or logits).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
from keras import layers

from bes.blocks import transpose_decoder_block
from saltseg.config.precision import HEAD_DTYPE
from saltseg.nets.encoders import FULL_DEPTHS, load_encoder_weights, resnext50
from saltseg.nets.layers import KERAS_BN, SCSE

FULL_DECODER_FILTERS: tuple[int, ...] = (128, 64, 32, 16, 8)
BES_SCSE = SCSE(reduction=2, spatial_filters=None, spatial_bias=True, spatial_gate=True)
"""scSE exactly as the original decoder builds it (``C``-map spatial branch)."""


def decoder_filters_for(width: int) -> tuple[int, ...]:
    """Decoder filters scaled with the encoder width (128..8 at ``width=64``), at least 8 so
    that a narrow (tiny) network keeps a usable full-resolution decoder."""
    return tuple(max(8, f * width // 64) for f in FULL_DECODER_FILTERS)


def build_bes(
    input_size: int = 224,
    width: int = 64,
    depths: Sequence[int] = FULL_DEPTHS,
    head: str = "sigmoid",
    dropout: float = 0.2,
    encoder_weights: str | os.PathLike[str] | None = None,
    decoder_filters: Sequence[int] | None = None,
    name: str = "bes_unet_resnext50",
) -> keras.Model:
    """Build the b.e.s. U-ResNeXt50.

    Input ``image``: ``(input_size, input_size, 3)`` float, 0-255. Output ``prediction``:
    ``(input_size, input_size, 1)``, probabilities (``head="sigmoid"``, for BCE+Dice) or
    logits (``head="logits"``, for Lovasz). ``width``/``depths`` shrink the encoder (and
    the decoder filters) for tiny test networks; ``encoder_weights`` is a local
    ``.weights.h5``/``.keras`` file whose encoder layers are loaded by name.
    """
    if head not in ("sigmoid", "logits"):
        raise ValueError(f"head must be 'sigmoid' or 'logits', got {head!r}")
    if input_size % 32:
        raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
    filters = tuple(decoder_filters) if decoder_filters else decoder_filters_for(width)
    if len(filters) != 5:
        raise ValueError(f"decoder_filters needs 5 values, got {filters}")

    inputs = keras.Input((input_size, input_size, 3), name="image")
    enc = resnext50(inputs, width=width, depths=depths)
    # Deepest skip first; the last (full-resolution) block has none.
    skips = [*reversed(enc.skips), None]
    x = enc.deepest
    for i, (f, skip) in enumerate(zip(filters, skips, strict=True)):
        x = transpose_decoder_block(x, skip, f, f"decoder_stage{i}", BES_SCSE, KERAS_BN)
    x = layers.SpatialDropout2D(dropout, name="head_dropout")(x)
    activation = "sigmoid" if head == "sigmoid" else None
    out = layers.Conv2D(1, 1, activation=activation, name="prediction", dtype=HEAD_DTYPE)(x)
    model = keras.Model(inputs, out, name=name)
    if encoder_weights is not None:
        load_encoder_weights(model, encoder_weights, enc.layer_names)
    return model
