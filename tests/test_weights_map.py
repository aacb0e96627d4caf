"""The maps from the original networks to ours: our imported networks compute what the
originals compute (numpy reference passes in tests/reference_nets.py)."""

from __future__ import annotations

import numpy as np
import pytest
from original_fakes import bes_layers, keras2_weights, phalanx_state
from reference_nets import bes_forward, phalanx_forward

from bes.model import build_bes, decoder_filters_for
from bes.weights_map import source_of as bes_source
from phalanx.model import build_phalanx
from phalanx.weights_map import source_of as phalanx_source
from saltseg.core.errors import DataError
from saltseg.nets.transfer import transfer

TINY = {"width": 16, "depths": (1, 1, 1, 1)}
SIZES = {"v3": 64, "v4": 64, "v5": 32}


def _close(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest difference relative to the largest reference value."""
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


def _ours(model, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    out = model(np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)), training=False)
    out = out if isinstance(out, dict) else {model.output_names[0]: out}
    return {
        k: np.asarray(v).transpose(0, 3, 1, 2) if np.ndim(v) == 4 else np.asarray(v)
        for k, v in out.items()
    }


@pytest.mark.parametrize("variant", ["v3", "v4", "v5"])
@pytest.mark.parametrize("gated", [False, True])
def test_phalanx_import_matches_reference(variant: str, gated: bool) -> None:
    rng = np.random.default_rng(1)
    sd = phalanx_state(rng, variant, **TINY)
    size = SIZES[variant]
    model = build_phalanx(variant, input_size=size, spatial_gate=gated, **TINY)
    report = transfer(model, sd, phalanx_source, "torch", f"fake {variant}")
    assert report.assigned == len(model.weights)
    assert all(k.startswith("resnet.") for k in report.unused)
    x = rng.normal(size=(2, 3, size, size))
    ours = _ours(model, x)
    ref = phalanx_forward(sd, variant, x, gated)
    other = phalanx_forward(sd, variant, x, not gated)
    assert set(ours) == set(ref)
    for name in ref:
        assert _close(ours[name].reshape(ref[name].shape), ref[name]) < 1e-4, name
    main = "fused" if variant == "v3" else "logits"
    assert _close(ours[main], other[main]) > 1e-2  # the other scSE variant is another network


def test_bes_import_matches_reference() -> None:
    rng = np.random.default_rng(2)
    width, depths = 16, (1, 1, 1, 1)
    layers = bes_layers(rng, width, depths, decoder_filters_for(width))
    kw = keras2_weights(layers)
    model = build_bes(input_size=64, width=width, depths=depths, head="logits")
    report = transfer(model, kw, bes_source, "keras2", "fake bes")
    assert report.assigned == len(model.weights) and report.unused == []
    x = rng.uniform(0, 255, size=(2, 3, 64, 64))
    ours = _ours(model, x)["prediction"]
    assert _close(ours, bes_forward(kw, x, depths)) < 1e-4


def test_transfer_is_strict() -> None:
    rng = np.random.default_rng(3)
    sd = phalanx_state(rng, "v5", **TINY)
    model = build_phalanx("v5", input_size=32, **TINY)
    before = [np.array(w) for w in model.weights]
    broken = dict(sd)
    del broken["decode3.c_att.conv1.bias"]
    broken["logit.0.weight"] = broken["logit.0.weight"][:, :-1]
    with pytest.raises(DataError) as err:
        transfer(model, broken, phalanx_source, "torch", "model_128_res34v500.pth")
    text = str(err.value)
    assert "model_128_res34v500.pth" in text and "missing key decode3.c_att.conv1.bias" in text
    assert "logit_conv/kernel: wrong shape" in text
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(before, model.weights, strict=True))
    with pytest.raises(DataError, match="no source layer in the map"):
        transfer(model, sd, lambda n: None if n == "bn0" else phalanx_source(n), "torch", "x")


@pytest.mark.slow
def test_full_width_files_import(tmp_path) -> None:
    """One full-width file per family, in the original format, onto the full networks."""
    from pathlib import Path

    from original_fakes import write_keras2_h5, write_torch_legacy

    from saltseg.data.weights_io import read_weights
    from saltseg.nets.zoo import get_model_spec

    rng = np.random.default_rng(4)
    h5 = Path(tmp_path) / "fold_0.hdf5"
    layers = bes_layers(rng)
    write_keras2_h5(h5, layers)
    model = get_model_spec("bes").build(head="logits")
    report = transfer(model, read_weights(h5), bes_source, "keras2", h5)
    assert report.assigned == len(model.weights) and not report.unused
    assert sum(n.startswith("stage") and "_conv2_" in n for n, _ in layers) == 16 * 32
    kernel = np.asarray(model.get_layer("stage3_unit2_conv2").kernel)
    assert kernel.shape == (3, 3, 16, 512)
    assert np.array_equal(kernel[..., 16 * 7 : 16 * 8], dict(layers)["stage3_unit2_conv2_7"][0][1])
    del model
    pth = Path(tmp_path) / "model_128_res34v500.pth"
    state = phalanx_state(rng, "v5")
    write_torch_legacy(pth, state)
    model = get_model_spec("phalanx-v5").build()
    report = transfer(model, read_weights(pth), phalanx_source, "torch", pth)
    assert report.assigned == len(model.weights)
    assert {k for k in state if k.startswith("resnet.")} == set(report.unused)
