"""The losses against direct NumPy transcriptions of their formulas."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from phalanx import losses as phalanx_losses
from saltseg.nets import losses

RTOL = ATOL = 1e-5


# --------------------------------------------------------------------------- references


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def ref_bce(y: np.ndarray, x: np.ndarray) -> float:
    p = sigmoid(x.astype(np.float64))
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def ref_bce_dice(y: np.ndarray, x: np.ndarray, from_logits: bool = True) -> float:
    p = sigmoid(x.astype(np.float64)) if from_logits else x.astype(np.float64)
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    bce = np.mean(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
    dice = (2 * np.sum(y * p) + 1) / (np.sum(y) + np.sum(p) + 1)  # one Dice for the batch
    return float(0.5 * bce + 0.5 * (1 - dice))


def ref_lovasz_one(y: np.ndarray, x: np.ndarray, activation: str) -> float:
    """One image: Lovasz extension of the Jaccard loss Delta(M) = |M| / |gt u M|."""
    y, x = y.ravel().astype(np.float64), x.ravel().astype(np.float64)
    errors = 1.0 - x * (2 * y - 1)
    order = np.argsort(-errors, kind="stable")
    e_sorted, y_sorted = errors[order], y[order]
    g = y.sum()
    total, prev, negatives = 0.0, 0.0, 0
    for k in range(1, len(e_sorted) + 1):
        negatives += int(y_sorted[k - 1] == 0)
        delta = k / (g + negatives)  # mispredicted set = the k largest errors
        e = e_sorted[k - 1]
        act = max(e, 0.0) if activation == "relu" else (e + 1.0 if e > 0 else np.exp(e))
        total += act * (delta - prev)
        prev = delta
    return total


def ref_lovasz(y: np.ndarray, x: np.ndarray, activation: str = "relu", per_image=True) -> float:
    if not per_image:
        return ref_lovasz_one(y, x, activation)
    return float(np.mean([ref_lovasz_one(yi, xi, activation) for yi, xi in zip(y, x, strict=True)]))


def ref_deep_supervision(
    y: np.ndarray, fused: np.ndarray, pixel: np.ndarray, empty: np.ndarray, norm: str = "batch"
) -> float:
    b = len(y)
    full = np.array([yi.sum() > 0 for yi in y], np.float64)
    lov_fused = ref_lovasz(y, fused, "relu")
    t = 1.0 - full  # the original label: 1 for an empty mask
    p = sigmoid(empty.ravel().astype(np.float64))
    bce = np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))
    pix = sum(full[i] * ref_lovasz_one(y[i], pixel[i], "relu") for i in range(b))
    pix /= b if norm == "batch" else max(full.sum(), 1.0)
    return float(lov_fused + bce + pix)


# --------------------------------------------------------------------------- data


def blob(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    cy, cx, r = [*rng.uniform(0, size, 2).tolist(), rng.uniform(3, size / 2)]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype(np.float32)


def batch(seed: int, size: int = 24, kinds=("empty", "full", "blob", "blob")):
    """Masks (B, S, S, 1) of the given kinds and random logits of the same shape."""
    rng = np.random.default_rng(seed)
    masks = []
    for kind in kinds:
        if kind == "empty":
            masks.append(np.zeros((size, size), np.float32))
        elif kind == "full":
            masks.append(np.ones((size, size), np.float32))
        else:
            masks.append(blob(rng, size))
    y = np.stack(masks)[..., None]
    x = (rng.normal(size=y.shape) * 3 + (y - 0.5) * rng.uniform(0, 4)).astype(np.float32)
    return y, x


CASES = [
    ("mixed", ("empty", "full", "blob", "blob")),
    ("empty", ("empty", "empty")),
    ("full", ("full",)),
    ("blobs", ("blob", "blob", "blob")),
]


def val(t) -> float:
    return float(keras.ops.convert_to_numpy(t))


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name,kinds", CASES)
def test_bce_and_bce_dice_match_reference(name, kinds):
    y, x = batch(1, kinds=kinds)
    np.testing.assert_allclose(val(losses.bce_logits(y, x)), ref_bce(y, x), RTOL, ATOL)
    np.testing.assert_allclose(val(losses.bce_dice(y, x)), ref_bce_dice(y, x), RTOL, ATOL)
    p = sigmoid(x)
    got = val(losses.bce_dice(y, p, from_logits=False))
    np.testing.assert_allclose(got, ref_bce_dice(y, p, from_logits=False), RTOL, ATOL)
    # (B, H, W) masks with (B, H, W, 1) logits
    np.testing.assert_allclose(val(losses.bce_logits(y[..., 0], x)), ref_bce(y, x), RTOL, ATOL)


@pytest.mark.parametrize("activation", ["relu", "elu+1"])
@pytest.mark.parametrize("name,kinds", CASES)
def test_lovasz_matches_reference(name, kinds, activation):
    y, x = batch(2, kinds=kinds)
    got = val(losses.lovasz_hinge(y, x, activation=activation))
    np.testing.assert_allclose(got, ref_lovasz(y, x, activation), RTOL, ATOL)
    got = val(losses.lovasz_hinge(y[..., 0], x[..., 0], per_image=False, activation=activation))
    np.testing.assert_allclose(got, ref_lovasz(y, x, activation, per_image=False), RTOL, ATOL)


def test_lovasz_full_size_tile():
    y, x = batch(3, size=101, kinds=("blob", "empty"))
    for act in ("relu", "elu+1"):
        got = val(losses.lovasz_hinge(y, x, activation=act))
        np.testing.assert_allclose(got, ref_lovasz(y, x, act), RTOL, ATOL)


def test_lovasz_perfect_prediction_and_variants():
    y, _ = batch(4)
    perfect = (2 * y - 1) * 20.0
    assert val(losses.lovasz_hinge(y, perfect)) == pytest.approx(0.0, abs=1e-7)
    assert val(losses.lovasz_hinge(y, perfect, activation="elu+1")) < 1e-7
    wrong = -perfect
    assert val(losses.lovasz_hinge(y, wrong)) > 1.0
    _, x = batch(5)
    relu, elu = (val(losses.lovasz_hinge(y, x, activation=a)) for a in ("relu", "elu+1"))
    assert elu > relu  # elu(e) + 1 > relu(e) everywhere, weights are >= 0
    with pytest.raises(ValueError):
        losses.lovasz_hinge(y, x, activation="tanh")


@pytest.mark.parametrize("norm", ["batch", "non_empty"])
@pytest.mark.parametrize("name,kinds", CASES)
def test_deep_supervision_matches_reference(name, kinds, norm):
    y, fused = batch(6, kinds=kinds)
    _, pixel = batch(7, kinds=kinds)
    empty = np.random.default_rng(8).normal(size=(len(y), 1)).astype(np.float32) * 2
    got = val(
        phalanx_losses.phalanx_deep_supervision_loss(
            y, fused, pixel, empty, pixel_normalization=norm
        )
    )
    assert np.isfinite(got)
    np.testing.assert_allclose(got, ref_deep_supervision(y, fused, pixel, empty, norm), RTOL, ATOL)
    # the Keras per-output losses sum to the same value
    parts = phalanx_losses.deep_supervision_losses(pixel_normalization=norm)
    total = sum(val(parts[k](y, out)) for k, out in (("fused", fused), ("pixel", pixel)))
    total += val(parts["empty"](y, empty))
    np.testing.assert_allclose(total, got, RTOL, ATOL)


def test_deep_supervision_without_non_empty_image():
    y, fused = batch(9, kinds=("empty", "empty", "empty"))
    pixel = np.full_like(fused, 5.0)
    for norm in ("batch", "non_empty"):
        assert val(phalanx_losses.pixel_lovasz(y, pixel, normalization=norm)) == 0.0
        got = phalanx_losses.phalanx_deep_supervision_loss(y, fused, pixel, np.zeros((3,)))
        assert np.isfinite(val(got))


def test_empty_classifier_targets():
    y, _ = batch(10, kinds=("empty", "blob"))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(phalanx_losses.empty_targets(y)), [1, 0]
    )
    targets = phalanx_losses.empty_targets(y, "non_empty")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(targets), [0, 1])
    logits = np.array([[3.0], [-2.0]], np.float32)
    from_masks = val(phalanx_losses.empty_bce(y, logits))
    from_labels = val(phalanx_losses.empty_bce(np.array([[1.0], [0.0]]), logits))
    assert from_masks == pytest.approx(from_labels)
    probs = sigmoid(logits)
    assert val(phalanx_losses.empty_bce(y, probs, from_logits=False)) == pytest.approx(
        from_masks, 1e-5
    )


def test_gradients_finite_and_jit():
    y, x = batch(11, kinds=("empty", "full", "blob"))
    y_t, x_t = tf.constant(y), tf.Variable(x)
    fns = {
        "bce": lambda: losses.bce_logits(y_t, x_t),
        "bce_dice": lambda: losses.bce_dice(y_t, x_t),
        "lovasz": lambda: losses.lovasz_hinge(y_t, x_t),
        "lovasz_elu": lambda: losses.lovasz_hinge(y_t, x_t, activation="elu+1"),
        "pixel": lambda: phalanx_losses.pixel_lovasz(y_t, x_t, normalization="non_empty"),
    }
    for name, fn in fns.items():
        with tf.GradientTape() as tape:
            loss = fn()
        grad = tape.gradient(loss, x_t).numpy()
        assert np.isfinite(grad).all() and np.abs(grad).sum() > 0, name

    @tf.function(jit_compile=True)
    def lovasz_and_grad(labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = losses.lovasz_hinge(labels, logits, activation="elu+1")
        return loss, tape.gradient(loss, logits)

    loss, grad = lovasz_and_grad(y_t, tf.constant(x))
    assert float(loss) == pytest.approx(ref_lovasz(y, x, "elu+1"), rel=1e-5)
    assert np.isfinite(grad.numpy()).all()


@pytest.mark.parametrize("name", ["bce", "bce_dice", "lovasz", "lovasz_elu"])
def test_registry_wrappers_and_serialisation(name):
    y, x = batch(12)
    loss = losses.get_loss(name)
    direct = {
        "bce": lambda: losses.bce_logits(y, x),
        "bce_dice": lambda: losses.bce_dice(y, x),
        "lovasz": lambda: losses.lovasz_hinge(y, x),
        "lovasz_elu": lambda: losses.lovasz_hinge(y, x, activation="elu+1"),
    }[name]()
    np.testing.assert_allclose(val(loss(y, x)), val(direct), RTOL, ATOL)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    np.testing.assert_allclose(val(clone(y, x)), val(direct), RTOL, ATOL)


def test_get_loss_deep_supervision_and_unknown():
    parts = losses.get_loss("deep_supervision", pixel_normalization="non_empty")
    assert set(parts) == {"fused", "pixel", "empty"}
    assert parts["pixel"].get_config()["normalization"] == "non_empty"
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get_loss("focal")


def test_fits_a_three_output_model():
    inputs = keras.Input((8, 8, 1))
    feat = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    outputs = {
        "fused": keras.layers.Conv2D(1, 1, name="fused")(feat),
        "pixel": keras.layers.Conv2D(1, 1, name="pixel")(feat),
        "empty": keras.layers.Dense(1, name="empty")(keras.layers.GlobalAveragePooling2D()(feat)),
    }
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss=losses.get_loss("deep_supervision"))
    rng = np.random.default_rng(13)
    x = rng.normal(size=(4, 8, 8, 1)).astype(np.float32)
    m = np.zeros((4, 8, 8, 1), np.float32)
    m[2:, 2:6, 2:6] = 1.0
    hist = model.fit(x, {"fused": m, "pixel": m, "empty": m}, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
