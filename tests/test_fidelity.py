"""The full recipe's mechanics as the original trained (docs/fidelity.md): b.e.s. epochs of
2 x tiles // batch steps drawn with replacement, phalanx SGD with coupled L2 decay, b.e.s.
cycles restarted from the previous cycle's best, v5 without dropout, external folds and
mosaic layouts, the original pseudo-label slices."""

from __future__ import annotations

import csv
from pathlib import Path

import keras
import numpy as np
import pytest

from phalanx.pseudo import ORIGINAL_SLICES, phalanx_bins, select_phalanx_slices
from saltseg.config.recipe import load_stage
from saltseg.core.errors import DataError
from saltseg.data.folds import external_folds, read_folds
from saltseg.data.tiles import TileSet
from saltseg.infer.networks import build_model
from saltseg.nets.zoo import get_model_spec
from saltseg.post.mosaic import read_original_mosaics
from saltseg.train.batches import TrainBatches
from saltseg.train.callbacks import CosineSchedule
from saltseg.train.optim import TorchSGD
from saltseg.train.phase import make_optimizer


def _tiles(n: int) -> TileSet:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(n, 101, 101), dtype=np.uint8)
    return TileSet([f"t{i:03d}" for i in range(n)], images, np.zeros((n, 101, 101), bool))


# --------------------------------------------------------------------------- recipes


def test_full_recipes_follow_the_original() -> None:
    for stage in ("stage1", "stage2"):
        bes = load_stage("bes", stage)
        for p in [*bes.pretrain, *bes.phases]:
            assert (p.sampling, p.epoch_passes) == ("replacement", 2), (stage, p.name)
        snapshots = bes.phases[-1]
        assert snapshots.cosine is not None and snapshots.cosine.cycle_best
        assert any(w.file == "cycle_best" for w in bes.predict)
        assert not bes.train_black_tiles
        assert load_stage("bes", stage, "tiny").phases[0].epoch_passes == 1
    assert load_stage("bes", "stage2").phases[0].init == "pretrain_best"
    for stage in ("stage1", "stage2", "stage3"):
        ph = load_stage("phalanx", stage)
        assert ph.train_black_tiles
        for p in [*ph.pretrain, *ph.phases]:
            assert p.optimizer.weight_decay_mode == "coupled"
            assert isinstance(make_optimizer(p), TorchSGD)
    stage3 = load_stage("phalanx", "stage3")
    assert stage3.model_options == {"dropout": 0.0}
    assert [(w.folds, w.snapshots) for w in stage3.predict] == [
        ([0, 1, 2], None),
        ([3, 4], [0, 1, 2]),
    ]
    cpu = load_stage("phalanx", "stage1", "cpu")  # the cpu profile keeps its measured choices
    assert not cpu.train_black_tiles
    assert cpu.model_options == {} and cpu.phases[0].optimizer.weight_decay_mode == "decoupled"


# --------------------------------------------------------------------------- 1. b.e.s. epochs


def test_bes_epochs_draw_twice_the_steps_with_replacement() -> None:
    tiles = _tiles(50)
    one = TrainBatches(tiles, None, 8, "none", epochs=3)  # type: ignore[arg-type]
    two = TrainBatches(tiles, None, 8, "none", epochs=3, sampling="replacement", passes=2)  # type: ignore[arg-type]
    assert one.steps_per_epoch == 50 // 8 and two.steps_per_epoch == 2 * (50 // 8)
    drawn = np.concatenate([two.batch_indices(e, b) for e in range(3) for b in range(12)])
    assert drawn.min() >= 0 and drawn.max() < 50
    assert any(len(np.unique(two.batch_indices(0, b))) < 8 for b in range(200))  # repeats
    np.testing.assert_array_equal(two.batch_indices(2, 5), two.batch_indices(2, 5))
    # a shuffled pass per 'pass' otherwise: each pass covers distinct tiles
    passes = TrainBatches(tiles, None, 10, "none", epochs=1, passes=2)  # type: ignore[arg-type]
    first = np.concatenate([passes.batch_indices(0, b) for b in range(5)])
    second = np.concatenate([passes.batch_indices(0, b) for b in range(5, 10)])
    assert len(set(first)) == 50 and len(set(second)) == 50
    with pytest.raises(ValueError, match="sampling"):
        TrainBatches(tiles, None, 8, "none", epochs=1, sampling="bootstrap")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- 2. coupled decay


def test_coupled_decay_equals_pytorch_sgd_by_hand() -> None:
    """Two steps of torch.optim.SGD(lr, momentum=0.9, weight_decay=0.01), computed by hand:
    g' = g + wd w; v1 = g'1; w1 = w0 - lr1 v1; v2 = 0.9 v1 + g'2; w2 = w1 - lr2 v2."""
    w0 = np.array([1.0, -2.0], dtype="float32")
    grads = [np.array([0.5, 0.25], "float32"), np.array([-1.0, 0.5], "float32")]
    lrs = [0.1, 0.05]
    # step 1: g' = [0.51, 0.23]; w1 = [0.949, -2.023]
    # step 2: g' = [-1 + 0.00949, 0.5 - 0.02023] = [-0.99051, 0.47977]
    #         v2 = 0.9 * [0.51, 0.23] + g' = [-0.53151, 0.68677]
    #         w2 = w1 - 0.05 v2 = [0.9755755, -2.0573385]
    expected = np.array([0.9755755, -2.0573385], dtype="float32")
    var = keras.Variable(w0.copy())
    opt = TorchSGD(lrs[0], momentum=0.9, l2=0.01)
    opt.build([var])
    for g, lr in zip(grads, lrs, strict=True):
        opt.learning_rate = lr
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(var), expected, rtol=1e-6)
    # Nesterov and no momentum, against the same update written out in numpy
    for momentum, nesterov in ((0.9, True), (0.0, False)):
        var = keras.Variable(w0.copy())
        opt = TorchSGD(lrs[0], momentum=momentum, nesterov=nesterov, l2=0.01)
        opt.build([var])
        w, buf = w0.astype("float64"), np.zeros(2)
        for g, lr in zip(grads, lrs, strict=True):
            opt.learning_rate = lr
            opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
            d = g + 0.01 * w
            buf = momentum * buf + d
            w = w - lr * ((d + momentum * buf) if nesterov else buf)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(var), w, rtol=1e-6)
    # Keras' decoupled decay is not the same update
    keras_var = keras.Variable(w0.copy())
    sgd = keras.optimizers.SGD(lrs[0], momentum=0.9, weight_decay=0.01)
    for g, lr in zip(grads, lrs, strict=True):
        sgd.learning_rate = lr
        sgd.apply_gradients([(keras.ops.convert_to_tensor(g), keras_var)])
    assert not np.allclose(keras.ops.convert_to_numpy(keras_var), expected, rtol=1e-4)


def test_coupled_decay_is_sgd_only(tmp_path: Path) -> None:
    from saltseg.config.recipe import OptimizerConfig

    with pytest.raises(ValueError, match="coupled"):
        OptimizerConfig(name="adam", lr=1e-3, weight_decay=1e-4, weight_decay_mode="coupled")


# --------------------------------------------------------------------------- 3. cycle restarts


def test_a_cycle_starts_from_the_previous_cycles_best(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="mse")
    cb = CosineSchedule([2, 2], 1e-3, 0.0, tmp_path, cycle_best=True)
    cb.set_model(model)

    def weights(value: float) -> None:
        model.set_weights([np.full((2, 1), value, "float32"), np.zeros(1, "float32")])

    def kernel() -> float:
        return float(model.get_weights()[0][0, 0])

    for epoch, (value, score) in enumerate([(1.0, 0.5), (2.0, 0.3)]):
        cb.on_epoch_begin(epoch)
        weights(value)
        cb.on_epoch_end(epoch, {"val_score": score})
    assert (tmp_path / "cycle_best_0.weights.h5").is_file()
    assert (tmp_path / "snapshot_0.weights.h5").is_file()  # end of cycle: value 2.0
    cb.on_epoch_begin(2)  # cycle 1 starts from cycle 0's best (1.0), not its last (2.0)
    assert kernel() == 1.0
    state = cb.get_state()
    fresh = CosineSchedule([2, 2], 1e-3, 0.0, tmp_path, cycle_best=True)
    fresh.set_state(state)  # resumed runs keep each cycle's best score
    assert fresh.cycle_scores == {0: 0.5}
    # without cycle_best a cycle continues from the last weights
    plain = CosineSchedule([2, 2], 1e-3, 0.0, tmp_path / "plain")
    plain.set_model(model)
    weights(2.0)
    plain.on_epoch_begin(2)
    assert kernel() == 2.0


def test_prediction_uses_each_cycles_best(tmp_path: Path) -> None:
    from saltseg.infer.stage import stage_weight_files

    recipe = load_stage("bes", "stage1", "tiny")
    for phase in ("bce_dice", "lovasz", "snapshots"):
        folder = tmp_path / "fold_0" / phase
        folder.mkdir(parents=True)
        (folder / "DONE.json").write_text("{}")
        for name in ("best", "snapshot_0", "snapshot_1", "cycle_best_0", "cycle_best_1"):
            (folder / f"{name}.weights.h5").write_bytes(b"x")
    files = stage_weight_files(recipe, tmp_path)[0]
    assert [(f.path.parent.name, f.path.name) for f in files] == [
        ("lovasz", "best.weights.h5"),
        ("snapshots", "cycle_best_0.weights.h5"),
        ("snapshots", "cycle_best_1.weights.h5"),
    ]


# --------------------------------------------------------------------------- 4. v5 dropout


def test_v5_without_dropout_is_deterministic_in_training_mode() -> None:
    spec = get_model_spec("phalanx-v5-tiny")
    x = np.random.default_rng(0).random((2, 128, 128, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    off = build_model(spec, options={"dropout": 0.0})
    a, b = (keras.ops.convert_to_numpy(off(x, training=True)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    keras.utils.set_random_seed(0)
    on = build_model(spec)
    c, d = (keras.ops.convert_to_numpy(on(x, training=True)) for _ in range(2))
    assert not np.array_equal(c, d)


# --------------------------------------------------------------------------- folds, mosaics


def test_external_fold_file_in_the_original_format(tmp_path: Path) -> None:
    path = tmp_path / "train_proc_v2_gr.csv"
    path.write_text("id,fold,unique_pixels\nb,1,178\na,0,1\nc,4,200\n")
    np.testing.assert_array_equal(external_folds(path, ["a", "b", "c"], 5), [0, 1, 4])
    with pytest.raises(DataError, match="no fold for train id 'd'"):
        external_folds(path, ["a", "d"], 5)
    with pytest.raises(DataError, match=r"outside 0\.\.2"):
        external_folds(path, ["a", "b", "c"], 3)
    path.write_text("id,fold,unique_pixels\na,0,1\nb,x,3\n")
    with pytest.raises(DataError, match=r"data row 2: id 'b' has an invalid fold 'x'"):
        read_folds(path)


def test_original_mosaic_layout(tmp_path: Path) -> None:
    layout = tmp_path / "mos_numpy_v2"
    layout.mkdir()
    with (layout / "mosaic_2_1.csv").open("w", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL).writerows([["a", "b"], ["c", "NA"]])
    with (layout / "mosaic_1_2.csv").open("w", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL).writerows([["d"], ["e"], ["zz"]])
    ids = ["a", "b", "c", "d", "e", "f"]
    m = read_original_mosaics(layout, ids)
    assert m.mosaic.tolist() == [0, 0, 0, 1, 1, -1]
    assert list(zip(m.row.tolist(), m.col.tolist(), strict=True))[:5] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (0, 0),
        (1, 0),
    ]
    assert m.meta["unknown_ids"] == 1  # zz is not among the tiles
    with (layout / "mosaic_9_9.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["f", "a"]])
    with pytest.raises(DataError, match=r"mosaic_9_9.csv: row 1, column 2: tile 'a' is also at"):
        read_original_mosaics(layout, ids)
    with pytest.raises(DataError, match="no mosaic CSV"):
        read_original_mosaics(tmp_path / "empty", ids)


# --------------------------------------------------------------------------- pseudo slices


def test_original_pseudo_label_slices() -> None:
    n = 2000
    rng = np.random.default_rng(1)
    pixels = rng.choice([0, 300, 2000, 4000, 6000, 8500], size=n)
    conf = np.ones(n)
    black = np.zeros(n, dtype=bool)
    chosen, folds = select_phalanx_slices(conf, pixels, black, 5)
    bins = phalanx_bins(pixels)
    for b, size in ORIGINAL_SLICES.items():
        members = np.flatnonzero(chosen & (bins == b))
        got = np.bincount(folds[members], minlength=5)
        expected = [min(size, max(0, len(members) - k * size)) for k in range(4)]
        assert got[:4].tolist() == expected
        assert got[4] == len(members) - sum(expected)
