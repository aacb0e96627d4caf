"""Prediction backends: the auto choice, the agreement check, the export cache, prefetching.

The exports run on one tiny network (phalanx-v5-tiny, random weights) built once for the
module; the cache's rules (reuse, rebuild on new weights, corrupt export rebuilt) are also
checked with a stand-in export that writes a small file, which is fast and exact.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from saltseg.config.precision import gpu_policy, prediction_xla, resolve_precision
from saltseg.infer import backends, choice
from saltseg.infer.choice import Choice, agreement, fastest_agreeing, record_choice
from saltseg.infer.exports import EXPORT_JSON, cached_export, export_dir, sha256_file
from saltseg.infer.prefetch import prefetch
from saltseg.infer.progress import TileCounter
from saltseg.nets.layers import split_groups

TINY = "phalanx-v5-tiny"


# --------------------------------------------------------------------------- choice


def test_agreement_needs_999_per_mille_of_pixels_and_the_score() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((100, 101, 101)) > 0.5
    truth[0] = False  # an empty tile
    ref = truth.astype(np.float32)
    same = agreement(ref, ref.copy(), truth)
    assert same.agrees and same.pixels_identical == 1.0 and same.score_delta == 0.0
    flipped = ref.reshape(-1).copy()
    n = int(0.002 * flipped.size)
    flipped[-n:] = 1.0 - flipped[-n:]
    off = agreement(ref, flipped.reshape(ref.shape), truth)
    assert off.pixels_identical < 0.999 and not off.agrees
    spot = ref.copy()
    spot[0, 50, 50:55] = 1.0  # 5 pixels: identical enough, but the empty tile scores 0
    one = agreement(ref, spot, truth)
    assert one.pixels_identical > 0.9999 and one.score_delta > 0.001 and not one.agrees


def test_fastest_agreeing_backend_wins_and_keras_is_the_fallback() -> None:
    measured = {
        "keras": {"tiles_per_s": 30.0},
        "keras-bf16": {"tiles_per_s": 60.0, "agrees": False},
        "openvino": {"tiles_per_s": 50.0, "agrees": True},
        "onnxruntime": {"tiles_per_s": 20.0, "agrees": True},
    }
    assert fastest_agreeing(measured) == "openvino"
    measured["openvino"]["agrees"] = False
    assert fastest_agreeing(measured) == "keras"
    assert fastest_agreeing({}) == "keras"


def test_auto_reads_the_recorded_choice_of_this_machine_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "choice.json"
    measured = {"keras": {"tiles_per_s": 10.0}, "openvino": {"tiles_per_s": 20.0, "agrees": True}}
    assert record_choice(TINY, measured, 48, 2, 1000, path) == Choice("openvino", 48, 2)
    record_choice("bes-tiny", {"keras": {"tiles_per_s": 5.0}}, 32, None, 1000, path)
    assert choice.resolve_backend("auto", TINY, path) == Choice("openvino", 48, 2)
    assert choice.resolve_backend("auto", "bes-tiny", path).backend == "keras"
    assert choice.resolve_backend("auto", "phalanx-v4", path) == Choice("keras")
    assert choice.resolve_backend("onnxruntime", TINY, path) == Choice("onnxruntime")
    with pytest.raises(ValueError, match="unknown backend"):
        choice.resolve_backend("tensorrt", TINY, path)
    monkeypatch.setattr(backends, "available", lambda b: b != "openvino")
    assert choice.resolve_backend("auto", TINY, path) == Choice("keras")
    monkeypatch.undo()
    data = json.loads(path.read_text())
    data["networks"][TINY]["machine"]["cores"] = 999
    path.write_text(json.dumps(data))
    assert choice.resolve_backend("auto", TINY, path) == Choice("keras")
    path.write_text("{not json")
    assert choice.resolve_backend("auto", TINY, path) == Choice("keras")


def test_choice_file_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(choice.CHOICE_ENV, str(tmp_path / "c.json"))
    assert choice.choice_path() == tmp_path / "c.json"
    monkeypatch.delenv(choice.CHOICE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert choice.choice_path() == tmp_path / "saltseg" / "backend_choice.json"


# --------------------------------------------------------------------------- GPU rules


@pytest.mark.parametrize(
    ("capability", "policy"),
    [(None, None), ((6, 1), "float32"), ((7, 5), "mixed_float16"), ((9, 0), "mixed_bfloat16")],
)
def test_gpu_policy_by_generation(capability: tuple[int, int] | None, policy: str | None) -> None:
    assert gpu_policy(capability) == policy


def test_auto_precision_prefers_the_gpu_rule() -> None:
    assert resolve_precision("auto", set(), gpu=(7, 0)) == "mixed_float16"
    assert resolve_precision("auto", {"avx512_bf16"}, gpu=(6, 0)) == "float32"
    assert resolve_precision("auto", {"avx512_bf16"}) == "mixed_bfloat16"
    assert resolve_precision("mixed_float16", set()) == "mixed_float16"
    assert prediction_xla(True) and not prediction_xla(False)


def test_grouped_convolution_splits_only_without_a_gpu() -> None:
    assert split_groups("auto", 32, lambda: False)
    assert not split_groups("auto", 32, lambda: True)
    assert split_groups("split", 32, lambda: True)
    assert not split_groups("native", 32, lambda: False)
    assert not split_groups("split", 1, lambda: False)


# --------------------------------------------------------------------------- prefetch, progress


def test_prefetch_keeps_order_raises_and_stops() -> None:
    assert list(prefetch(iter(range(20)), depth=3)) == list(range(20))

    def failing():
        yield 1
        raise OSError("disk gone")

    it = prefetch(failing())
    assert next(it) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(it)
    produced: list[int] = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = prefetch(endless(), depth=2)
    assert next(it) == 0
    it.close()
    assert not [t for t in threading.enumerate() if t.name == "saltseg-prefetch"]
    assert len(produced) <= 5


def test_tile_counter_adds_fractions_into_whole_tiles() -> None:
    class Bar:
        n = 0

        def update(self, k: int) -> None:
            self.n += k

    bar = Bar()
    counter = TileCounter(bar)
    for _ in range(3):
        for _ in range(3):
            counter(100 / 3)
    assert bar.n == 300


# --------------------------------------------------------------------------- export cache


def _fake_build(calls: list[Path]):
    def build(path: Path) -> None:
        calls.append(path)
        path.write_bytes(b"model " * 100)
        (path.parent / "model.bin").write_bytes(os.urandom(64))

    return build


def test_cache_reused_rebuilt_on_new_weights_and_when_corrupt(tmp_path: Path) -> None:
    weights = tmp_path / "best.weights.h5"
    weights.write_bytes(b"weights v1")
    calls: list[Path] = []
    logs: list[str] = []
    first = cached_export(weights, "openvino", _fake_build(calls), logs.append)
    assert first.name == "model.xml" and len(calls) == 1
    assert first.parent == export_dir(weights, "openvino", sha256_file(weights))
    assert cached_export(weights, "openvino", _fake_build(calls), logs.append) == first
    assert len(calls) == 1  # reused

    (first.parent / "model.bin").write_bytes(b"truncated")  # corrupt: rebuilt, never used
    again = cached_export(weights, "openvino", _fake_build(calls), logs.append)
    assert again == first and len(calls) == 2
    assert any("corrupt" in m for m in logs)
    (first.parent / EXPORT_JSON).unlink()  # interrupted before its record: rebuilt
    cached_export(weights, "openvino", _fake_build(calls), logs.append)
    assert len(calls) == 3

    weights.write_bytes(b"weights v2")  # new weights: a new export, the old one removed
    new = cached_export(weights, "openvino", _fake_build(calls), logs.append)
    assert len(calls) == 4 and new.parent != first.parent and not first.parent.exists()
    assert [p.name for p in new.parent.parent.iterdir()] == [new.parent.name]


def test_failed_export_leaves_nothing(tmp_path: Path) -> None:
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"w")

    def broken(path: Path) -> None:
        path.write_text("half")
        raise RuntimeError("converter failed")

    with pytest.raises(RuntimeError, match="converter failed"):
        cached_export(weights, "onnxruntime", broken)
    assert not list((tmp_path / ".exports").iterdir())


# --------------------------------------------------------------------------- real exports


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """The tiny network, its weights file and a few adapted tiles."""
    import keras

    from saltseg.data.adapters import get_adapter
    from saltseg.infer.networks import build_model, main_output, save_weights
    from saltseg.nets.zoo import get_model_spec

    keras.utils.set_random_seed(0)
    spec = get_model_spec(TINY)
    model = build_model(spec)
    weights = tmp_path_factory.mktemp("tiny") / "best.weights.h5"
    save_weights(model, weights)
    tiles = np.random.default_rng(1).integers(0, 256, (6, 101, 101), dtype=np.uint8)
    x = get_adapter(spec.adapter).forward_images(tiles).astype(np.float32)
    output = main_output(spec, model)
    ref = backends.make_forward("keras", model, output, weights, 4)(x)
    return model, output, weights, x, ref


def _close_masks(ref: np.ndarray, logits: np.ndarray) -> float:
    assert logits.shape == ref.shape
    return float(((ref > 0) == (logits > 0)).mean())


def test_openvino_export_agrees_is_cached_and_rebuilt_when_corrupt(tiny) -> None:
    pytest.importorskip("openvino")
    model, output, weights, x, ref = tiny
    logs: list[str] = []
    fwd = backends.make_forward("openvino", model, output, weights, 4, 1, logs.append)
    assert _close_masks(ref, fwd(x)) >= 0.99
    folder = export_dir(weights, "openvino", sha256_file(weights))
    assert sorted(p.name for p in folder.iterdir()) == [EXPORT_JSON, "model.bin", "model.xml"]
    stamp = (folder / "model.bin").stat().st_mtime_ns
    backends.make_forward("openvino", model, output, weights, 4, 1, logs.append)
    assert (folder / "model.bin").stat().st_mtime_ns == stamp and len(logs) == 1  # reused
    with open(folder / "model.bin", "r+b") as fh:  # flip bytes in the weights blob
        fh.seek(1000)
        fh.write(b"\xff" * 64)
    fwd = backends.make_forward("openvino", model, output, weights, 4, 1, logs.append)
    assert any("corrupt" in m for m in logs)
    assert _close_masks(ref, fwd(x)) >= 0.99


@pytest.mark.slow
def test_onnxruntime_export_matches_float32_keras(tiny) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    model, output, weights, x, ref = tiny
    out = backends.make_forward("onnxruntime", model, output, weights, 4, 1, lambda m: None)(x)
    assert np.abs(out - ref).max() < 1e-3


def test_keras_bf16_backend_builds_in_a_mixed_policy() -> None:
    assert backends.keras_policy("keras") == "float32"
    assert backends.keras_policy("openvino") == "float32"
    assert backends.keras_policy("keras-bf16").startswith("mixed_")
    with pytest.raises(ValueError, match="unknown backend"):
        backends.make_forward("tvm", None, None, None, 1)  # type: ignore[arg-type]


def test_xla_prediction_path_matches_plain_keras(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU's XLA-compiled forward pass, run here on the CPU (XLA compiles for both)."""
    model, output, weights, x, ref = tiny
    monkeypatch.setattr(backends, "prediction_xla", lambda on_gpu: True)
    fwd = backends.make_forward("keras", model, output, weights, 4)
    assert fwd._fn is not model.predict_on_batch
    np.testing.assert_allclose(fwd(x), ref, atol=1e-3)
