"""Reference forward passes of the original networks in numpy (NCHW), for the import tests.

Written from the original operators' semantics, independently of our Keras layers:
PyTorch ``Conv2d`` (OIHW, symmetric padding), ``ConvTranspose2d`` (IOHW), bilinear
up-sampling with ``align_corners=True``, eval-mode ``BatchNorm2d``, ``MaxPool2d(2)``; Keras 2
``Conv2D`` (HWIO) with ``valid`` padding after explicit ``ZeroPadding2D`` or ``same`` at stride
1, ``Conv2DTranspose`` ``same`` (TensorFlow: the full transposed convolution cropped by
``(k - s) // 2`` at the start), ``BatchNormalization`` in inference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

W = Mapping[str, np.ndarray]


def conv(x: np.ndarray, w: np.ndarray, b=None, stride: int = 1, pad: int = 0, groups: int = 1):
    """PyTorch ``F.conv2d``: ``x`` (N,C,H,W), ``w`` (O, C/groups, kh, kw)."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]
    ci, co = x.shape[1] // groups, w.shape[0] // groups
    outs = [
        np.einsum("nchwij,ocij->nohw", win[:, g * ci : (g + 1) * ci], w[g * co : (g + 1) * co])
        for g in range(groups)
    ]
    y = np.concatenate(outs, 1)
    return y if b is None else y + b[None, :, None, None]


def conv_transpose(x: np.ndarray, w: np.ndarray, b=None, stride: int = 2, crop: int = 0, size=None):
    """``F.conv_transpose2d`` (``w``: I,O,kh,kw), cropped by ``crop`` at the start."""
    n, _, h, wd = x.shape
    kh, kw = w.shape[2:]
    full = np.zeros((n, w.shape[1], (h - 1) * stride + kh, (wd - 1) * stride + kw))
    for i in range(kh):
        for j in range(kw):
            part = np.einsum("nchw,co->nohw", x, w[:, :, i, j])
            full[:, :, i : i + stride * h : stride, j : j + stride * wd : stride] += part
    out_h = size or h * stride
    y = full[:, :, crop : crop + out_h, crop : crop + out_h]
    return y if b is None else y + b[None, :, None, None]


def bn(x: np.ndarray, gamma, beta, mean, var, eps: float) -> np.ndarray:
    g = np.ones_like(mean) if gamma is None else gamma
    return (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + eps) * g[
        None, :, None, None
    ] + beta[None, :, None, None]


def relu(x):
    return np.maximum(x, 0)


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))  # no overflow for large |x|


def up(x: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear ``align_corners=True`` up-sampling by ``factor``."""

    def axis(n_in: int) -> np.ndarray:
        n_out = n_in * factor
        m = np.zeros((n_out, n_in))
        for j in range(n_out):
            src = j * (n_in - 1) / (n_out - 1) if n_in > 1 else 0.0
            lo = int(np.floor(src))
            hi = min(lo + 1, n_in - 1)
            m[j, lo] += 1 - (src - lo)
            m[j, hi] += src - lo
        return m

    return np.einsum("Hh,nchw,Ww->ncHW", axis(x.shape[2]), x, axis(x.shape[3]))


def maxpool2(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def gap(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(2, 3), keepdims=True)


# --------------------------------------------------------------------------- phalanx (PyTorch)


def _tbn(sd: W, p: str, x: np.ndarray) -> np.ndarray:
    return bn(
        x, sd[f"{p}.weight"], sd[f"{p}.bias"], sd[f"{p}.running_mean"], sd[f"{p}.running_var"], 1e-5
    )


def _tconv(sd: W, p: str, x: np.ndarray, pad: int = 0, stride: int = 1) -> np.ndarray:
    return conv(x, sd[f"{p}.weight"], sd.get(f"{p}.bias"), stride, pad)


def _scse(sd: W, s_att: str, c_att: str, x: np.ndarray, gated: bool) -> np.ndarray:
    s = sigmoid(_tconv(sd, f"{s_att}.squeeze", x))
    s = x * s if gated else s
    z = relu(_tconv(sd, f"{c_att}.conv1", gap(x)))
    z = sigmoid(_tconv(sd, f"{c_att}.conv2", z))
    return s + x * z


def _basic(sd: W, p: str, x: np.ndarray, stride: int) -> np.ndarray:
    y = relu(_tbn(sd, f"{p}.bn1", _tconv(sd, f"{p}.conv1", x, 1, stride)))
    y = _tbn(sd, f"{p}.bn2", _tconv(sd, f"{p}.conv2", y, 1))
    sc = x
    if f"{p}.downsample.0.weight" in sd:
        sc = _tbn(sd, f"{p}.downsample.1", _tconv(sd, f"{p}.downsample.0", x, 0, stride))
    return relu(y + sc)


def _cbe(sd: W, p: str, x: np.ndarray, k: int, stride: int = 1) -> np.ndarray:
    """conv (no bias) -> BN -> ELU of a Sequential ``p``."""
    return elu(_tbn(sd, f"{p}.1", _tconv(sd, f"{p}.0", x, k // 2, stride)))


def phalanx_forward(sd: W, variant: str, x: np.ndarray, gated: bool) -> dict[str, np.ndarray]:
    """``Res34Unet{variant}.forward`` in eval mode (dropout off): logits by output name."""
    w1 = sd["conv1.0.weight"]
    x = relu(
        _tbn(
            sd, "conv1.1", _tconv(sd, "conv1.0", x, w1.shape[2] // 2, 2 if w1.shape[2] == 7 else 1)
        )
    )
    feats = []
    for s in range(2, 6):
        units = sorted({int(k.split(".")[2]) for k in sd if k.startswith(f"encode{s}.0.")})
        for u in units:
            x = _basic(sd, f"encode{s}.0.{u}", x, 2 if (u == 0 and s > 2) else 1)
        x = _scse(sd, f"encode{s}.1.satt", f"encode{s}.1.catt", x, gated)
        feats.append(x)
    e2, e3, e4, e5 = feats
    glob = _tconv(sd, "center.0.glob.1", gap(e5))
    d2 = _cbe(sd, "center.0.down2_1", e5, 5, 2)
    d3 = _cbe(sd, "center.0.down3_1", d2, 3, 2)
    d2 = _cbe(sd, "center.0.down2_2", d2, 5)
    d3 = _cbe(sd, "center.0.down3_2", d3, 3)
    d2 = up(d2 + up(d3, 2), 2)
    f = maxpool2(_cbe(sd, "center.0.conv1", e5, 1) * d2 + glob)
    decoded = []
    for k, skip in zip((5, 4, 3, 2), (e5, e4, e3, e2), strict=True):
        p = f"decode{k}"
        u = conv_transpose(f, sd[f"{p}.tr_conv.weight"], sd[f"{p}.tr_conv.bias"], 2)
        cat = relu(_tbn(sd, f"{p}.bn", np.concatenate([u, _tconv(sd, f"{p}.x_conv", skip)], 1)))
        f = _scse(sd, f"{p}.s_att", f"{p}.c_att", cat, gated)
        decoded.insert(0, f)
    if "decode1.conv1.0.weight" in sd:
        d1 = _cbe(sd, "decode1.conv2", _cbe(sd, "decode1.conv1", up(decoded[0], 2), 3), 3)
        decoded.insert(0, _scse(sd, "decode1.s_att", "decode1.c_att", d1, gated))
    hyper = np.concatenate([decoded[0]] + [up(d, 2**i) for i, d in enumerate(decoded[1:], 1)], 1)
    if variant != "v3":
        y = elu(_tconv(sd, "logit.0", hyper, 1))
        return {"logits": _tconv(sd, "logit.2", y)}
    fuse_pixel = _cbe(sd, "fuse_pixel", hyper, 3)
    pixel = _tconv(sd, "logit_pixel", fuse_pixel)
    e = e5.mean(axis=(2, 3))
    fuse_image = elu(e @ sd["fuse_image.0.weight"].T + sd["fuse_image.0.bias"])
    empty = fuse_image @ sd["logit_image.0.weight"].T + sd["logit_image.0.bias"]
    image = np.broadcast_to(fuse_image[:, :, None, None], (*fuse_image.shape, *pixel.shape[2:]))
    fused = _tconv(
        sd, "logit.2", elu(_tconv(sd, "logit.0", np.concatenate([fuse_pixel, image], 1), 1))
    )
    return {"fused": fused, "pixel": pixel, "empty": empty}


# --------------------------------------------------------------------------- b.e.s. (Keras 2)


def _kconv(kw: W, name: str, x: np.ndarray, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Keras 2 Conv2D (HWIO kernel) after ``pad`` zeros each side, ``valid``."""
    return conv(x, kw[f"{name}/kernel"].transpose(3, 2, 0, 1), kw.get(f"{name}/bias"), stride, pad)


def _kbn(kw: W, name: str, x: np.ndarray, eps: float) -> np.ndarray:
    return bn(
        x,
        kw.get(f"{name}/gamma"),
        kw[f"{name}/beta"],
        kw[f"{name}/moving_mean"],
        kw[f"{name}/moving_variance"],
        eps,
    )


def bes_forward(kw: W, x: np.ndarray, depths: Sequence[int], cardinality: int = 32) -> np.ndarray:
    """``unet_resnext_50_lovasz`` in inference: logits of ``prediction`` (N,1,H,W)."""
    e = 2e-5
    x = _kbn(kw, "bn_data", x, e)
    x = relu(_kbn(kw, "bn0", _kconv(kw, "conv0", x, 2, 3), e))
    skips = [x]
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))  # ZeroPadding2D, then max-pool
    x = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(
        axis=(4, 5)
    )
    for s, depth in enumerate(depths, start=1):
        for u in range(1, depth + 1):
            p = f"stage{s}_unit{u}"
            stride = 2 if (u == 1 and s > 1) else 1
            y = relu(_kbn(kw, f"{p}_bn1", _kconv(kw, f"{p}_conv1", x), e))
            if u == 1 and s > 1:
                skips.append(y)
            g = y.shape[1] // cardinality
            parts = [
                _kconv(kw, f"{p}_conv2_{c}", y[:, c * g : (c + 1) * g], stride, 1)
                for c in range(cardinality)
            ]
            y = relu(_kbn(kw, f"{p}_bn2", np.concatenate(parts, 1), e))
            y = _kbn(kw, f"{p}_bn3", _kconv(kw, f"{p}_conv3", y), e)
            sc = _kbn(kw, f"{p}_sc_bn", _kconv(kw, f"{p}_sc", x, stride), e) if u == 1 else x
            x = relu(y + sc)
    for i, skip in enumerate([*reversed(skips), None]):
        p = f"decoder_stage{i}"
        k = kw[f"{p}_upsample/kernel"]  # (4, 4, out, in)
        x = conv_transpose(x, k.transpose(3, 2, 0, 1), None, 2, crop=1)
        x = relu(_kbn(kw, f"{p}_bn1", x, 1e-3))
        if skip is not None:
            x = np.concatenate([x, skip], 1)
        x = relu(_kbn(kw, f"{p}_bn2", _kconv(kw, f"{p}_conv2", x, 1, 1), 1e-3))
        c = f"csse_block_{i}"
        m = x.mean(axis=(2, 3))
        z = relu(m @ kw[f"{c}cse_lin1/kernel"] + kw[f"{c}cse_lin1/bias"])
        z = sigmoid(z @ kw[f"{c}cse_lin2/kernel"] + kw[f"{c}cse_lin2/bias"])
        x = x * z[:, :, None, None] + x * sigmoid(_kconv(kw, f"{c}_conv", x))
    return _kconv(kw, "prediction", x)
