"""ImageNet encoders from torchvision state_dicts (.pth, .safetensors) and the Keras 2
``resnext50_imagenet_1000_no_top.h5`` (fake files in those formats, tiny widths)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from original_fakes import bes_layers, phalanx_state, write_keras2_h5, write_torch_zip

from bes.model import build_bes, decoder_filters_for
from phalanx.model import build_phalanx
from saltseg.config.recipe import load_stage
from saltseg.config.settings import Settings
from saltseg.core.errors import ConfigError
from saltseg.nets.encoders import IMAGENET_MEAN, EncoderWeightsError

TINY = {"width": 16, "depths": (1, 1, 1, 1)}
GROUP = re.compile(r"stage\d_unit\d+_conv2_\d+")


def _torchvision_resnet34() -> dict[str, np.ndarray]:
    sd = phalanx_state(np.random.default_rng(0), "v4", **TINY)
    return {k.removeprefix("resnet."): v for k, v in sd.items() if k.startswith("resnet.")}


def _keras2_encoder() -> list:
    layers = bes_layers(np.random.default_rng(1), 16, (1, 1, 1, 1), decoder_filters_for(16))
    return [(n, w) for n, w in layers if not n.startswith(("decoder", "csse", "prediction"))]


def _torchvision_resnext(layers: list) -> dict[str, np.ndarray]:
    """The Keras 2 encoder's weights as a torchvision resnext50_32x4d state_dict."""
    kw = {w.split(":")[0]: v for _, ws in layers for w, v in ws}
    sd: dict[str, np.ndarray] = {"conv1.weight": kw["conv0/kernel"].transpose(3, 2, 0, 1)}
    bn = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean"}
    bn["moving_variance"] = "running_var"
    for key, value in kw.items():
        layer, var = key.split("/")
        if layer in ("bn_data", "conv0") or GROUP.fullmatch(layer):  # per-group convs below
            continue
        target = "bn1" if layer == "bn0" else layer
        if layer.startswith("stage"):
            s, u, part = layer.removeprefix("stage").split("_", 2)
            part = {"sc": "downsample.0", "sc_bn": "downsample.1"}.get(part, part)
            target = f"layer{s}.{int(u.removeprefix('unit')) - 1}.{part}"
        sd[f"{target}.{bn.get(var, 'weight')}"] = (
            value if var in bn else value.transpose(3, 2, 0, 1)
        )
    for layer in {
        k.split("/")[0].rsplit("_", 1)[0] for k in kw if GROUP.fullmatch(k.split("/")[0])
    }:
        groups = [kw[f"{layer}_{c}/kernel"].transpose(3, 2, 0, 1) for c in range(32)]
        s, u = layer.removeprefix("stage").split("_")[:2]
        sd[f"layer{s}.{int(u.removeprefix('unit')) - 1}.conv2.weight"] = np.concatenate(groups)
    sd["fc.weight"] = np.zeros((10, 512), np.float32)
    return sd


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_torchvision_resnet34_into_phalanx(tmp_path: Path, fmt: str) -> None:
    sd = _torchvision_resnet34()
    path = tmp_path / f"resnet34.{fmt}"
    if fmt == "pth":
        write_torch_zip(path, sd, location="cpu")
    else:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(path))
    v4 = build_phalanx("v4", input_size=64, encoder_weights=path, **TINY)
    conv = v4.get_layer("stage2_unit1_conv1").kernel
    assert np.array_equal(np.asarray(conv), sd["layer2.0.conv1.weight"].transpose(2, 3, 1, 0))
    assert np.array_equal(
        np.asarray(v4.get_layer("conv0").kernel), sd["conv1.weight"].transpose(2, 3, 1, 0)
    )
    assert np.array_equal(
        np.asarray(v4.get_layer("stage3_unit1_sc_bn").moving_variance),
        sd["layer3.0.downsample.1.running_var"],
    )
    v5 = build_phalanx("v5", input_size=32, encoder_weights=path, **TINY)  # 3x3 stem stays random
    assert tuple(v5.get_layer("conv0").kernel.shape[:2]) == (3, 3)
    assert np.array_equal(np.asarray(v5.get_layer("bn0").gamma), sd["bn1.weight"])


def test_keras2_and_torchvision_resnext_into_bes(tmp_path: Path) -> None:
    layers = _keras2_encoder()
    h5 = tmp_path / "resnext50_imagenet_1000_no_top.h5"
    write_keras2_h5(h5, layers, limit=1024)
    from_h5 = build_bes(input_size=64, encoder_weights=h5, **TINY)
    kw = {w.split(":")[0]: v for _, ws in layers for w, v in ws}
    groups = np.concatenate([kw[f"stage2_unit1_conv2_{c}/kernel"] for c in range(32)], -1)
    assert np.array_equal(np.asarray(from_h5.get_layer("stage2_unit1_conv2").kernel), groups)
    assert np.array_equal(
        np.asarray(from_h5.get_layer("bn_data").moving_mean), kw["bn_data/moving_mean"]
    )
    pth = tmp_path / "resnext50_32x4d.pth"
    write_torch_zip(pth, _torchvision_resnext(layers), location="cpu")
    from_pth = build_bes(input_size=64, encoder_weights=pth, **TINY)
    for name in ("stage2_unit1_conv2", "stage4_unit1_sc", "conv0", "stage3_unit1_bn3"):
        for a, b in zip(
            from_h5.get_layer(name).weights, from_pth.get_layer(name).weights, strict=True
        ):
            assert np.array_equal(np.asarray(a), np.asarray(b)), name
    assert np.allclose(np.asarray(from_pth.get_layer("bn_data").moving_mean), IMAGENET_MEAN)
    write_torch_zip(pth, _torchvision_resnet34(), location="cpu")
    with pytest.raises(EncoderWeightsError, match=r"resnext50_32x4d\.pth: does not fit"):
        build_bes(input_size=64, encoder_weights=pth, **TINY)


def test_recipe_encoder_weights_must_exist(tmp_path: Path) -> None:
    from saltseg.train.stage import train_stage

    recipe = load_stage("phalanx", "stage1", "tiny").model_copy(
        update={"encoder_weights": "r34.pth"}
    )
    with pytest.raises(ConfigError, match=r"r34\.pth: file not found \(nothing is downloaded\)"):
        train_stage(recipe, Settings(base_dir=tmp_path), profile="tiny")


def test_training_builds_scratch_phases_with_the_encoder(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from saltseg.nets.zoo import get_model_spec
    from saltseg.train.phase import PhaseRun
    from saltseg.train.stage import train_stage

    path = tmp_path / "resnet34.pth"
    sd = _torchvision_resnet34()
    write_torch_zip(path, sd, location="cpu")
    recipe = load_stage("phalanx", "stage1", "tiny").model_copy(
        update={"encoder_weights": str(path)}
    )
    spec = get_model_spec(recipe.model)
    want = sd["layer4.0.conv2.weight"].transpose(2, 3, 1, 0)
    scratch = PhaseRun._build(SimpleNamespace(recipe=recipe, spec=spec, init_weights=None))
    assert np.array_equal(np.asarray(scratch.get_layer("stage4_unit1_conv2").kernel), want)
    warm = PhaseRun._build(SimpleNamespace(recipe=recipe, spec=spec, init_weights=path))
    assert not np.array_equal(np.asarray(warm.get_layer("stage4_unit1_conv2").kernel), want)
    imported = load_stage("bes", "original", "tiny")
    with pytest.raises(ConfigError, match="holds imported weights"):
        train_stage(imported, Settings(base_dir=tmp_path), profile="tiny")
