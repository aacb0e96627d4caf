"""Training precision: float32 or mixed bfloat16, chosen by the CPU's instruction set."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
import yaml

from saltseg.config.precision import cpu_flags, dtype_policy, has_native_bf16, resolve_precision
from saltseg.config.recipe import load_recipe, load_stage
from saltseg.core.errors import ConfigError
from saltseg.infer.networks import build_model, load_model_weights, save_weights
from saltseg.nets.losses import get_loss
from saltseg.nets.zoo import get_model_spec

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
processor\t: 1
flags\t\t: fpu sse2 avx2
"""


def test_cpu_flags_reads_the_first_cpu(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    flags = cpu_flags(tmp_path / "cpuinfo")
    assert {"avx512_bf16", "avx2"} <= flags
    assert cpu_flags(tmp_path / "missing") == set()
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert has_native_bf16(cpu_flags(arm))


@pytest.mark.parametrize(
    ("precision", "flags", "policy"),
    [
        ("auto", {"avx2", "avx512_bf16"}, "mixed_bfloat16"),
        ("auto", {"avx2", "amx_bf16"}, "mixed_bfloat16"),
        ("auto", {"avx2", "avx512f"}, "float32"),
        ("auto", set(), "float32"),
        ("float32", {"avx512_bf16"}, "float32"),
        ("mixed_bfloat16", set(), "mixed_bfloat16"),
    ],
)
def test_resolve_precision(precision: str, flags: set[str], policy: str) -> None:
    assert resolve_precision(precision, flags) == policy


def test_resolve_precision_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="float16"):
        resolve_precision("float16", set())


def test_dtype_policy_is_restored_after_errors() -> None:
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError), dtype_policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == before


def test_recipes_name_their_precision(tmp_path: Path) -> None:
    assert load_stage("phalanx", "stage1").precision == "float32"
    assert load_stage("phalanx", "stage1", "cpu").precision == "auto"
    data = {
        "family": "phalanx",
        "stage": "x",
        "model": "phalanx-v5-tiny",
        "precision": "half",
        "phases": [{"name": "a", "loss": "lovasz", "optimizer": {"name": "adam", "lr": 1e-3}}],
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"bad.yaml: key 'precision'"):
        load_recipe(path)


def test_bf16_training_keeps_float32_weights_that_load_into_float32(tmp_path: Path) -> None:
    """Layers compute in bfloat16, variables stay float32, a bf16-trained model's weights
    load into the float32 network and predict the same up to bfloat16 rounding."""
    spec = get_model_spec("phalanx-v5-tiny")
    keras.utils.set_random_seed(0)
    bf16 = build_model(spec, policy="mixed_bfloat16")
    convs = [x for x in bf16._flatten_layers() if isinstance(x, keras.layers.Conv2D)]
    head = {"logit_conv", "logits"}
    assert all(bf16.get_layer(n).compute_dtype == "float32" for n in head)
    body = [c for c in convs if c.name not in head]
    assert len(body) > 10 and all(c.compute_dtype == "bfloat16" for c in body)
    assert all(v.dtype == "float32" for v in bf16.weights)
    # the logits come out of a float32 layer: Lovasz sorts them, bf16 would tie many
    assert bf16.get_layer("logits").compute_dtype == "float32"
    assert bf16.outputs[0].dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # restored after building

    rng = np.random.default_rng(0)
    x = rng.random((4, spec.input_size, spec.input_size, 3), dtype=np.float32)
    y = (rng.random((4, spec.input_size, spec.input_size, 1)) > 0.5).astype(np.float32)
    bf16.compile(keras.optimizers.Adam(1e-3), loss=get_loss("lovasz"))
    losses = [float(bf16.train_on_batch(x, y)) for _ in range(3)]
    assert all(np.isfinite(losses)), losses
    save_weights(bf16, tmp_path / "m.weights.h5")

    f32 = build_model(spec)
    load_model_weights(f32, tmp_path / "m.weights.h5")
    a = bf16.predict(x, verbose=0)
    assert a.dtype == np.float32

    b = np.asarray(f32.predict(x, verbose=0), dtype=np.float32)
    assert b.dtype == np.float32 and np.isfinite(b).all()
    # same network: predictions agree far better than an untrained one's would
    scale = float(np.abs(b).mean())
    assert float(np.abs(a - b).mean()) < 0.05 * scale + 0.02, (np.abs(a - b).mean(), scale)
