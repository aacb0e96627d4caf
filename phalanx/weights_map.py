"""The original phalanx weights onto :func:`phalanx.model.build_phalanx`.

The published files are PyTorch 0.4 ``torch.save(state_dict)`` files (legacy format, CUDA
tensors) of ``Res34Unetv5``: ``phalanx/weights/model_128_res34v5{fold}{snapshot}.pth``, folds
0-2 with snapshots 0-3 and folds 3-4 with snapshots 0-2. The same map serves v3 and v4:

=====================================  =============================================
ours                                   original (``nn.Module`` path)
=====================================  =============================================
``conv0``, ``bn0``                     ``conv1.0``, ``conv1.1``
``stage{s}_unit{u}_{conv,bn}{1,2}``    ``encode{s+1}.0.{u-1}.{conv,bn}{1,2}``
``stage{s}_unit{u}_sc``, ``_sc_bn``    ``encode{s+1}.0.{u-1}.downsample.0``, ``.1``
``encode{k}_scse_sse_conv``            ``encode{k}.1.satt.squeeze``
``encode{k}_scse_cse_fc{1,2}``         ``encode{k}.1.catt.conv{1,2}`` (1x1 convs)
``center_fpa_glob_conv``               ``center.0.glob.1``
``center_fpa_{down*,main}_{conv,bn}``  ``center.0.{down*,conv1}.{0,1}``
``decode{k}_{tr_conv,x_conv,bn}``      ``decode{k}.{tr_conv,x_conv,bn}``
``decode{k}_scse_*``                   ``decode{k}.s_att.squeeze``, ``.c_att.conv{1,2}``
``decode1_conv{1,2}_{conv,bn}``        ``decode1.conv{1,2}.{0,1}``
``logit_conv``, ``logits``/``fused``   ``logit.0``, ``logit.2``
``fuse_pixel_{conv,bn}``, ``pixel``    ``fuse_pixel.{0,1}``, ``logit_pixel``
``fuse_image``, ``empty``              ``fuse_image.0``, ``logit_image.0``
=====================================  =============================================

The ``resnet.*`` copies of the encoder (and ``resnet.fc``, v5's unused 7x7 ``resnet.conv1``)
are left unused. The scSE spatial branch of the published code is ``x * sigmoid(conv(x))``,
changed from the bare map by the commit "fix SpatialAttention2d" of 2018-11-05 (the
competition ended 2018-10-19; the weights were linked on 2019-04-05); which one the weights
were trained with is not recorded, so both are offered: recipes ``original`` (bare map, as
:mod:`phalanx.model` builds by default) and ``original_gated`` (``spatial_gate: true``);
``saltseg weights check`` scores both.
"""

from __future__ import annotations

import re
from pathlib import Path

from saltseg.core.errors import DataError
from saltseg.nets.transfer import OriginalFile, OriginalWeights, family_folder

SNAPSHOTS: dict[int, int] = {0: 4, 1: 4, 2: 4, 3: 3, 4: 3}
"""Published snapshots per fold."""

_RULES: list[tuple[str, str]] = [
    (r"conv0", "conv1.0"),
    (r"bn0", "conv1.1"),
    (r"stage(\d)_unit(\d+)_sc", "encode{s}.0.{u}.downsample.0"),
    (r"stage(\d)_unit(\d+)_sc_bn", "encode{s}.0.{u}.downsample.1"),
    (r"stage(\d)_unit(\d+)_((?:conv|bn)[12])", "encode{s}.0.{u}.{3}"),
    (r"(encode\d|decode\d)_scse_sse_conv", "{1}.{att}.squeeze"),
    (r"(encode\d|decode\d)_scse_cse_fc([12])", "{1}.{catt}.conv{2}"),
    (r"center_fpa_glob_conv", "center.0.glob.1"),
    (r"center_fpa_main_conv", "center.0.conv1.0"),
    (r"center_fpa_main_bn", "center.0.conv1.1"),
    (r"center_fpa_(down\d_\d)_conv", "center.0.{1}.0"),
    (r"center_fpa_(down\d_\d)_bn", "center.0.{1}.1"),
    (r"(decode\d)_(tr_conv|x_conv|bn)", "{1}.{2}"),
    (r"decode1_(conv[12])_conv", "decode1.{1}.0"),
    (r"decode1_(conv[12])_bn", "decode1.{1}.1"),
    (r"logit_conv", "logit.0"),
    (r"logits|logits_half|fused", "logit.2"),
    (r"fuse_pixel_conv", "fuse_pixel.0"),
    (r"fuse_pixel_bn", "fuse_pixel.1"),
    (r"pixel", "logit_pixel"),
    (r"fuse_image", "fuse_image.0"),
    (r"empty", "logit_image.0"),
]


def source_of(name: str) -> str | None:
    """Our layer -> the original state_dict key prefix."""
    for pattern, target in _RULES:
        m = re.fullmatch(pattern, name)
        if m is None:
            continue
        groups = (m[0], *m.groups())
        extra: dict[str, object] = {}
        if name.startswith("stage"):
            extra = {"s": int(m[1]) + 1, "u": int(m[2]) - 1}
        if m.groups() and m[1].startswith(("encode", "decode")):
            enc = m[1].startswith("encode")
            extra = {"att": "1.satt" if enc else "s_att", "catt": "1.catt" if enc else "c_att"}
        return target.format(*groups, **extra)
    return None


def files(original: Path) -> list[OriginalFile]:
    """The 18 published files (a :class:`DataError` names a missing fold or snapshot)."""
    root = family_folder(original, "phalanx")
    out: list[OriginalFile] = []
    for k, n in SNAPSHOTS.items():
        for s in range(n):
            path = root / f"model_128_res34v5{k}{s}.pth"
            if not path.is_file():
                raise DataError(f"{path}: phalanx stage 3 fold {k} snapshot {s} missing")
            out.append(OriginalFile(path, k, "cycles", f"snapshot_{s}", 1.0, "stage_3"))
    return out


ORIGINAL = OriginalWeights(
    family="phalanx",
    recipe="original",
    convention="torch",
    source_of=source_of,
    files=files,
    variants={"map": "original", "gated": "original_gated"},
    default_variant="map",
    description="PyTorch 0.4 state_dicts, Res34Unetv5, 5 folds x 3-4 snapshots",
)
