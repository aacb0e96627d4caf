"""Encoders, the two model families and the zoo: build, shapes, parameter counts, save/load."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

from saltseg.data.adapters import get_adapter
from saltseg.nets.encoders import (
    EncoderWeightsError,
    build_encoder_model,
    get_encoder,
    save_encoder_weights,
)
from saltseg.nets.layers import BatchNormalization, BilinearUpsample
from saltseg.nets.zoo import MODELS, add_models_parser, describe_models, get_model_spec

ROOT = Path(__file__).resolve().parents[1]
MODEL_SOURCES = [
    "saltseg/nets/layers.py",
    "saltseg/nets/encoders.py",
    "saltseg/nets/zoo.py",
    "saltseg/data/adapters.py",
    "saltseg/nets/losses.py",
    "bes/model.py",
    "bes/blocks.py",
    "phalanx/model.py",
    "phalanx/blocks.py",
    "phalanx/losses.py",
]
FULL = [n for n, s in MODELS.items() if not s.tiny]
TINY = [n for n, s in MODELS.items() if s.tiny]


# --- parameter counts of the original networks, computed from their architectures ------
def _torch_resnet34(stem: int = 7) -> int:
    """torchvision ResNet34 conv1/bn1/layer1-4 (trainable parameters, no fc)."""
    n, cin = stem * stem * 3 * 64 + 2 * 64, 64
    for depth, f in zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True):
        for _ in range(depth):
            n += 9 * cin * f + 9 * f * f + 4 * f + (cin * f + 2 * f if cin != f else 0)
            cin = f
    return n


def _torch_scse(c: int, r: int) -> int:
    h = c // r
    return c + c * h + h + h * c + c


def _original_phalanx(variant: str) -> int:
    """``sum(p.numel())`` of Res34Unetv{3,4,5} over the modules used in ``forward``."""
    i, o = 512, 256
    fpa = i * o + 25 * i * i + 25 * i * o + 9 * i * i + 9 * i * o + i * o + 4 * i + 6 * o

    def dec2(up: int, x: int, n: int = 64) -> int:
        return x * n // 2 + up * n // 2 * 4 + n // 2 + 2 * n + _torch_scse(n, 16)

    n = _torch_resnet34(3 if variant == "v5" else 7)
    n += sum(_torch_scse(c, 4) for c in (64, 128, 256, 512)) + fpa
    n += dec2(256, 512) + dec2(64, 256) + dec2(64, 128) + dec2(64, 64)
    dec1 = 9 * 64 * 32 + 64 + 9 * 32 * 64 + 128 + _torch_scse(64, 16)
    if variant == "v4":
        n += dec1 + 9 * 320 * 64 + 64 + 64
    elif variant == "v3":
        n += dec1 + 9 * 320 * 64 + 128 + 64 + 512 * 64 + 64 + 65 + 9 * 128 * 64 + 64
    else:
        n += 9 * 256 * 32 + 32 + 32
    return n


def _original_bes() -> int:
    """Keras ``count_params()`` of the original unet_resnext_50 (BN statistics included)."""
    n, cin = 3 * 3 + 49 * 3 * 64 + 4 * 64, 64
    for depth, f in zip((3, 4, 6, 3), (128, 256, 512, 1024), strict=True):
        for u in range(depth):
            n += cin * f + 9 * (f // 32) * f + 2 * f * f + 16 * f
            n += cin * 2 * f + 8 * f if u == 0 else 0
            cin = 2 * f
    for f, skip in zip((128, 64, 32, 16, 8), (1024, 512, 256, 64, 0), strict=True):
        n += 16 * cin * f + 9 * (f + skip) * f + 8 * f + 2 * (f * (f // 2)) + f // 2 + f
        n += f * f + f
        cin = f
    return n + 9


def _trainable(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_count_formulas_match_published_backbones() -> None:
    # torchvision resnet34 has 21,797,672 parameters including its 512x1000 fc layer
    assert _torch_resnet34() + 512 * 1000 + 1000 == 21_797_672


def test_no_tensorflow_in_model_sources() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+tensorflow|\btf\.", re.MULTILINE)
    for rel in MODEL_SOURCES:
        text = (ROOT / rel).read_text(encoding="utf-8")
        assert not pattern.search(text), f"{rel} uses tensorflow directly"


# --- encoders -------------------------------------------------------------------------
def test_encoder_registry_and_feature_shapes() -> None:
    with pytest.raises(ValueError, match="unknown encoder"):
        get_encoder("vgg")
    inp = keras.Input((224, 224, 3))
    feats = get_encoder("resnext50")(inp, width=16, depths=(1, 1, 1, 1))
    assert [tuple(t.shape[1:3]) for t in feats.skips] == [(112, 112), (56, 56), (28, 28), (14, 14)]
    assert tuple(feats.deepest.shape[1:]) == (7, 7, 512)
    assert "stage2_unit1_conv1" in feats.layer_names and "stage2_unit1_sc" in feats.layer_names
    feats = get_encoder("resnet34")(keras.Input((128, 128, 3)), width=8, stem="3x3", max_pool=False)
    assert [int(t.shape[1]) for t in feats.stages] == [128, 64, 32, 16]
    assert [int(t.shape[-1]) for t in feats.stages] == [8, 16, 32, 64]


def test_full_resnext50_encoder_matches_torchvision_count() -> None:
    model = build_encoder_model("resnext50", (224, 224, 3), input_bn=False)
    # torchvision resnext50_32x4d: 25,028,904 parameters, of which fc 2048*1000 + 1000
    assert _trainable(model) == 25_028_904 - 2_049_000
    grouped = model.get_layer("stage3_unit2_conv2")
    assert grouped.groups == 32 and tuple(grouped.kernel.shape) == (3, 3, 16, 512)
    keras.backend.clear_session()


def test_encoder_weights_load_by_name(tmp_path: Path) -> None:
    opts = {"width": 16, "depths": (1, 1, 1, 1)}
    source = build_encoder_model("resnext50", (224, 224, 3), **opts)
    for w in source.weights:
        w.assign(np.random.default_rng(0).normal(size=w.shape).astype("float32"))
    conv0 = np.asarray(source.get_layer("conv0").kernel)
    h5 = tmp_path / "enc.weights.h5"
    assert save_encoder_weights(source, h5) == len([x for x in source.layers if x.weights])
    model = get_model_spec("bes-tiny").build(encoder_weights=h5)
    for name in ("conv0", "bn_data", "stage3_unit1_conv2", "stage4_unit1_sc_bn"):
        for a, b in zip(model.get_layer(name).weights, source.get_layer(name).weights, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    keras_file = tmp_path / "enc.keras"
    source.save(keras_file)
    model = get_model_spec("bes-tiny").build(encoder_weights=keras_file)
    np.testing.assert_array_equal(
        np.asarray(model.get_layer("stage1_unit1_conv3").kernel),
        np.asarray(source.get_layer("stage1_unit1_conv3").kernel),
    )
    clone = build_encoder_model("resnext50", (224, 224, 3), weights_path=h5, **opts)
    np.testing.assert_array_equal(np.asarray(clone.get_layer("conv0").kernel), conv0)
    with pytest.raises(EncoderWeightsError, match="not found"):
        get_model_spec("bes-tiny").build(encoder_weights=tmp_path / "missing.weights.h5")
    with pytest.raises(EncoderWeightsError, match="does not match"):
        get_model_spec("phalanx-v5-tiny").build(encoder_weights=h5)
    plain = tmp_path / "plain.weights.h5"
    source.save_weights(plain)
    with pytest.raises(EncoderWeightsError, match="creation order"):
        get_model_spec("bes-tiny").build(encoder_weights=plain)
    keras.backend.clear_session()


# --- layers -----------------------------------------------------------------------------
def test_bilinear_upsample_aligns_corners() -> None:
    x = np.array([0.0, 1.0, 3.0], dtype="float32").reshape(1, 3, 1, 1) * np.ones((1, 1, 3, 1))
    y = np.asarray(BilinearUpsample(2)(x.astype("float32")))
    expected = np.interp(np.linspace(0, 2, 6), [0, 1, 2], [0, 1, 3])
    np.testing.assert_allclose(y[0, :, 0, 0], expected, atol=1e-6)
    np.testing.assert_allclose(y[0, :, 5, 0], expected, atol=1e-6)
    assert BilinearUpsample(4)(np.ones((1, 1, 1, 2), "float32")).shape == (1, 4, 4, 2)


# --- full networks: build, parameter counts, shapes -------------------------------------
ORIGINAL_COUNTS = {
    "bes": ("params", _original_bes()),
    "phalanx-v4": ("trainable", _original_phalanx("v4")),
    "phalanx-v3": ("trainable", _original_phalanx("v3")),
    "phalanx-v5": ("trainable", _original_phalanx("v5")),
}


@pytest.mark.parametrize("name", FULL)
def test_full_network_matches_original(name: str) -> None:
    spec = get_model_spec(name)
    model = spec.build()
    kind, expected = ORIGINAL_COUNTS[name]
    got = model.count_params() if kind == "params" else _trainable(model)
    assert got == expected
    s = spec.input_size
    assert tuple(model.inputs[0].shape) == (None, s, s, 3)
    shapes = dict(zip(model.output_names, (tuple(t.shape) for t in model.outputs), strict=True))
    assert shapes[spec.main_output] == (None, s, s, 1)
    keras.backend.clear_session()


def test_v3_deep_supervision_outputs() -> None:
    model = get_model_spec("phalanx-v3").build()
    assert sorted(model.output_names) == ["empty", "fused", "pixel"]
    shapes = dict(zip(model.output_names, (tuple(t.shape) for t in model.outputs), strict=True))
    assert shapes["empty"] == (None, 1)
    assert shapes["fused"] == shapes["pixel"] == (None, 256, 256, 1)
    assert model.get_layer("hypercolumn").output.shape[-1] == 320
    assert model.get_layer("hypercolumn_dropout").rate == pytest.approx(0.4)
    keras.backend.clear_session()


# --- tiny networks: forward pass through the adapters -----------------------------------
@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_and_inverse(name: str) -> None:
    spec = get_model_spec(name)
    model = spec.build()
    adapter = get_adapter(spec.adapter)
    assert adapter.size == spec.input_size
    images = np.random.default_rng(1).integers(0, 256, (2, 101, 101), dtype=np.uint8)
    out = model.predict(adapter.forward_images(images), verbose=0)
    main = out[spec.main_output] if isinstance(out, dict) else out
    assert main.shape == (2, spec.input_size, spec.input_size, 1)
    assert np.isfinite(main).all()
    if spec.output_kind == "sigmoid":
        assert main.min() >= 0.0 and main.max() <= 1.0
    back = adapter.inverse(main)
    assert back.shape == (2, 101, 101) and back.dtype == np.float32
    if isinstance(out, dict):
        assert out["empty"].shape == (2, 1)
        assert out["pixel"].shape == main.shape
    keras.backend.clear_session()


def test_phalanx_stride2_stem_halves_the_network() -> None:
    """The cpu network: a 3x3/2 stem runs the v5 network at half size, logits up-sampled."""
    from phalanx.model import build_phalanx

    model = build_phalanx("v5", width=16, depths=(1, 1, 1, 1), stem="3x3/2")
    assert model.get_layer("conv0").strides == (2, 2)
    assert tuple(model.get_layer("hypercolumn").output.shape[1:3]) == (64, 64)
    assert tuple(model.get_layer("logits_half").output.shape[1:]) == (64, 64, 1)
    assert tuple(model.output.shape) == (None, 128, 128, 1)
    assert model.output_names == ["logits"]
    cpu = get_model_spec("phalanx-v5-cpu").kwargs
    assert (cpu["stem"], cpu["width"], tuple(cpu["depths"])) == ("3x3/2", 32, (2, 2, 2, 2))
    with pytest.raises(ValueError, match="multiple of 64"):
        build_phalanx("v5", width=16, depths=(1, 1, 1, 1), stem="3x3/2", input_size=96)
    with pytest.raises(ValueError, match="stem must be"):
        build_phalanx("v5", width=16, depths=(1, 1, 1, 1), stem="5x5")
    keras.backend.clear_session()


def test_bes_logits_head() -> None:
    model = get_model_spec("bes-tiny").build(head="logits")
    assert model.get_layer("prediction").activation.__name__ == "linear"
    with pytest.raises(ValueError, match="head"):
        get_model_spec("bes-tiny").build(head="softmax")
    keras.backend.clear_session()


@pytest.mark.parametrize("name", ["phalanx-v3-tiny", "phalanx-v5-cpu", "bes-tiny"])
def test_tiny_save_and_reload(name: str, tmp_path: Path) -> None:
    spec = get_model_spec(name)
    model = spec.build()
    adapter = get_adapter(spec.adapter)
    x = adapter.forward_images(np.random.default_rng(2).integers(0, 256, (2, 101, 101), "uint8"))
    before = model.predict(x, verbose=0)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, compile=False)
    after = reloaded.predict(x, verbose=0)
    if isinstance(before, dict):
        assert set(before) == set(after)
        for key in before:
            np.testing.assert_allclose(after[key], before[key], rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    keras.backend.clear_session()


# --- zoo and CLI --------------------------------------------------------------------------
def test_zoo_registry_and_cli(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("bes", "bes-tiny", "phalanx-v3", "phalanx-v4", "phalanx-v5"):
        assert name in MODELS and f"{name.removesuffix('-tiny')}-tiny" in MODELS
    rows = describe_models(["phalanx-v5-tiny"])
    assert rows[0]["input_size"] == 128 and rows[0]["params"] > 0
    assert rows[0]["outputs"] == {"logits": [None, 128, 128, 1]}
    parser = argparse.ArgumentParser()
    add_models_parser(parser.add_subparsers())
    args = parser.parse_args(["models", "bes-tiny"])
    assert args.func(args) == 0
    assert "| bes-tiny | bes | 224 |" in capsys.readouterr().out
    args = parser.parse_args(["models", "nope"])
    assert args.func(args) == 2


def test_grouped_conv_split_equals_native(tmp_path) -> None:
    import keras
    import numpy as np

    from saltseg.nets.layers import GroupedConv2D

    x = np.random.default_rng(0).normal(size=(2, 9, 9, 64)).astype("float32")
    native = GroupedConv2D(32, 3, strides=2, groups=8, use_bias=True, implementation="native")
    split = GroupedConv2D(32, 3, strides=2, groups=8, use_bias=True, implementation="split")
    native.build(x.shape)
    split.build(x.shape)
    split.set_weights([w + 0.1 * (i == 1) for i, w in enumerate(native.get_weights())])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(native(x)) + 0.1,
        keras.ops.convert_to_numpy(split(x)),
        atol=1e-4,
    )
    cfg = split.get_config()
    assert cfg["implementation"] == "split" and cfg["groups"] == 8


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("scale", [True, False])
def test_batch_norm_gradient_matches_keras(policy: str, scale: bool) -> None:
    """The hand-written training gradient of our ``BatchNormalization`` is the Keras layer's."""
    import tensorflow as tf  # the test drives the TensorFlow backend's tape

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, (4, 6, 6, 5)).astype("float32"))
    w = tf.constant(rng.normal(0.0, 1.0, (4, 6, 6, 5)).astype("float32"))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        results = []
        for cls in (keras.layers.BatchNormalization, BatchNormalization):
            layer = cls(momentum=0.9, epsilon=1e-5, scale=scale)
            layer.build(x.shape)
            if scale:
                layer.gamma.assign(np.linspace(0.5, 1.5, 5))
            layer.beta.assign(np.linspace(-1.0, 1.0, 5))
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(tf.cast(y, "float32") * w)
            variables = [layer.gamma, layer.beta] if scale else [layer.beta]
            grads = tape.gradient(loss, [x, *variables])
            inference = layer(x, training=False)
            results.append([y, *grads, layer.moving_mean, layer.moving_variance, inference])
            compute = keras.config.dtype_policy().compute_dtype
            assert keras.backend.standardize_dtype(y.dtype) == compute
    finally:
        keras.config.set_dtype_policy(previous)
    for ours, theirs in zip(results[1], results[0], strict=True):
        a = np.asarray(ours, dtype=np.float32)
        b = np.asarray(theirs, dtype=np.float32)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(b).max()))


def test_models_use_the_fast_batch_norm() -> None:
    model = get_model_spec("phalanx-v5-cpu").build()
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(isinstance(layer, BatchNormalization) for layer in norms)


def test_batch_norm_loads_weights_saved_with_the_keras_layer(tmp_path: Path) -> None:
    """Weight files of networks built with ``keras.layers.BatchNormalization`` still load."""

    def build(cls: type) -> keras.Model:
        inputs = keras.Input((4, 4, 3))
        x = keras.layers.Conv2D(2, 1, name="conv")(inputs)
        return keras.Model(inputs, cls(name="bn")(x))

    old = build(keras.layers.BatchNormalization)
    old.get_layer("bn").moving_mean.assign([0.25, -0.5])
    path = tmp_path / "old.weights.h5"
    old.save_weights(path)
    new = build(BatchNormalization)
    new.load_weights(path)
    np.testing.assert_array_equal(np.asarray(new.get_layer("bn").moving_mean), [0.25, -0.5])
