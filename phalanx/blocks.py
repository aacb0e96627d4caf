"""phalanx blocks: Feature Pyramid Attention centre, decoder blocks, hypercolumn (Keras 3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras import layers

from saltseg.nets.layers import SCSE, batch_norm, conv_bn_act, upsample


def feature_pyramid_attention(
    x: Any, filters: int, name: str, bn: dict[str, float] | None = None
) -> Any:
    """Feature Pyramid Attention centre block (Li et al., 2018; "FPAv2" in phalanx).

    ``out = ELU(BN(conv1x1(x))) * up(b5 + up(b3)) + conv1x1(GAP(x))`` where ``b5``/``b3``
    are the 5x5 and 3x3 pyramid branches at 1/2 and 1/4 of the input resolution.
    Spatial size must be divisible by 4.
    """
    in_ch = int(x.shape[-1])
    h, w = x.shape[1], x.shape[2]
    if h is not None and w is not None and (h % 4 or w % 4):
        raise ValueError(f"{name}: spatial size {h}x{w} is not divisible by 4")
    glob = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_glob_pool")(x)
    glob = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_glob_conv")(glob)

    d2 = conv_bn_act(x, in_ch, 5, f"{name}_down2_1", strides=2, activation="elu", bn=bn)
    d3 = conv_bn_act(d2, in_ch, 3, f"{name}_down3_1", strides=2, activation="elu", bn=bn)
    d2 = conv_bn_act(d2, filters, 5, f"{name}_down2_2", activation="elu", bn=bn)
    d3 = conv_bn_act(d3, filters, 3, f"{name}_down3_2", activation="elu", bn=bn)
    d3 = upsample(d3, 2, f"{name}_down3_up")
    d2 = layers.Add(name=f"{name}_pyramid_add")([d2, d3])
    d2 = upsample(d2, 2, f"{name}_pyramid_up")

    main = conv_bn_act(x, filters, 1, f"{name}_main", activation="elu", bn=bn)
    main = layers.Multiply(name=f"{name}_attend")([main, d2])
    return layers.Add(name=f"{name}_add_glob")([main, glob])


def fuse_decoder_block(
    up: Any,
    skip: Any,
    filters: int,
    name: str,
    attention: SCSE,
    bn: dict[str, float] | None = None,
) -> Any:
    """phalanx decoder block: 2x2/2 transposed conv of ``up`` (``filters // 2``) and 1x1
    conv of ``skip`` (``filters // 2``) -> concat -> BN -> ReLU -> scSE."""
    half = filters // 2
    u = layers.Conv2DTranspose(half, 2, strides=2, use_bias=True, name=f"{name}_tr_conv")(up)
    s = layers.Conv2D(half, 1, use_bias=False, name=f"{name}_x_conv")(skip)
    x = layers.Concatenate(name=f"{name}_concat")([u, s])
    x = batch_norm(x, f"{name}_bn", bn)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return attention(x, f"{name}_scse")


def upsample_decoder_block(
    x: Any,
    mid_filters: int,
    filters: int,
    name: str,
    attention: SCSE,
    bn: dict[str, float] | None = None,
) -> Any:
    """phalanx last decoder block (no skip): bilinear x2 -> (3x3 conv, BN, ELU) x2 -> scSE."""
    x = upsample(x, 2, f"{name}_up")
    x = conv_bn_act(x, mid_filters, 3, f"{name}_conv1", activation="elu", bn=bn)
    x = conv_bn_act(x, filters, 3, f"{name}_conv2", activation="elu", bn=bn)
    return attention(x, f"{name}_scse")


def hypercolumn(features: Sequence[Any], name: str) -> Any:
    """Up-sample every feature map to the size of the first one and concatenate them."""
    target = int(features[0].shape[1])
    maps = [features[0]]
    for i, f in enumerate(features[1:], start=1):
        factor = target // int(f.shape[1])
        maps.append(upsample(f, factor, f"{name}_up{i}"))
    return layers.Concatenate(name=name)(maps)
