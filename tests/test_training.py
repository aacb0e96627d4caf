"""The training engine on synthetic data with the tiny networks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from saltseg.config.precision import resolve_precision
from saltseg.config.recipe import SelfLabelConfig, load_stage, recipe_path
from saltseg.config.settings import load_settings
from saltseg.data import synthetic
from saltseg.train.stage import train_stage

pytestmark = pytest.mark.slow


def _workspace(factory, name: str, n_train: int, n_test: int, seed: int) -> Path:
    """A synthetic TGS folder and a SETTINGS.json (tiny profile) pointing at it."""
    root = factory.mktemp(name)
    synthetic.generate_dataset(root / "data", n_train=n_train, n_test=n_test, seed=seed)
    (root / "SETTINGS.json").write_text(json.dumps({"DATA_DIR": "data", "PROFILE": "tiny"}))
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return _workspace(tmp_path_factory, "train", n_train=200, n_test=40, seed=5)


@pytest.fixture(scope="module")
def learn_workspace(tmp_path_factory) -> Path:
    """A larger set, enough for a tiny network to learn something in minutes."""
    return _workspace(tmp_path_factory, "learn", n_train=380, n_test=8, seed=11)


def _log(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "log.jsonl").read_text().splitlines()]


def test_tiny_stage_writes_snapshots_and_skips_when_done(workspace: Path) -> None:
    settings = load_settings(workspace / "SETTINGS.json")
    recipe = load_stage("phalanx", "stage1", "tiny").model_copy(update={"max_train_tiles": 24})
    results = train_stage(recipe, settings, profile="tiny", verbose=0)
    phase = workspace / "phalanx" / "weights" / "stage1" / "fold_0" / "cycles"
    assert results["fold_0"][0].epochs == 2
    for name in (
        "snapshot_0.weights.h5",
        "snapshot_1.weights.h5",
        "best.weights.h5",
        "last.weights.h5",
        "DONE.json",
        "log.jsonl",
    ):
        assert (phase / name).is_file(), name
    assert not (phase / "resume").exists()
    log = _log(phase)
    assert [r["epoch"] for r in log] == [1, 2]
    assert all(0 <= r["val_score"] <= 1 and r["lr"] > 0 for r in log)
    # cycles of one epoch: every epoch starts a cycle at lr_max
    assert [r["lr"] for r in log] == pytest.approx([0.012, 0.012])
    cfg = yaml.safe_load((phase.parent / "config.yaml").read_text())
    assert cfg["profile"] == "tiny" and cfg["recipe"]["model"] == "phalanx-v4-tiny"
    again = train_stage(recipe, settings, profile="tiny", verbose=0)
    assert again["fold_0"][0].skipped


def _recipe_file(workspace: Path, epochs: int) -> Path:
    data = yaml.safe_load(recipe_path("phalanx", "stage3").read_text())
    data.update(
        model="phalanx-v5-tiny",
        folds=[1],
        pretrain=[],
        max_train_tiles=40,
        max_val_tiles=16,
        profiles={},
    )
    data["stage"] = "resume_test"
    phase = data["phases"][0]
    phase.update(
        init="scratch",
        batch_size=8,
        cosine={**phase["cosine"], "cycle_epochs": [2] * (epochs // 2)},
    )
    path = workspace / f"resume_{epochs}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _train_cmd(workspace: Path, recipe: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "saltseg",
        "--settings",
        str(workspace / "SETTINGS.json"),
        "train",
        "--recipe",
        str(recipe),
        "--profile",
        "full",
        "--verbose",
        "0",
    ]


def test_killed_run_resumes_to_the_same_epochs(workspace: Path) -> None:
    recipe = _recipe_file(workspace, epochs=6)
    phase = workspace / "phalanx" / "weights" / "resume_test" / "fold_1" / "cycles"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        _train_cmd(workspace, recipe),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 600
    while time.time() < deadline:  # kill it hard once two epochs are finished
        state = phase / "resume" / "state.json"
        if state.is_file() and json.loads(state.read_text())["epoch"] >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("training ended before it could be killed:\n" + proc.stdout.read())
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((phase / "resume" / "state.json").read_text())["epoch"]
    assert 2 <= killed_at < 6 and not (phase / "DONE.json").exists()
    out = subprocess.run(_train_cmd(workspace, recipe), env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"resuming after epoch {killed_at}/6" in out.stdout
    log = _log(phase)
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert json.loads((phase / "DONE.json").read_text())["epochs"] == 6
    snaps = sorted(p.name for p in phase.glob("snapshot_*.weights.h5"))
    assert snaps == ["snapshot_0.weights.h5", "snapshot_1.weights.h5", "snapshot_2.weights.h5"]
    # the schedule continued where it stopped: cosine restarts at epochs 1, 3, 5
    lrs = [r["lr"] for r in log]
    assert lrs[0] == lrs[2] == lrs[4] == pytest.approx(0.01)
    assert lrs[1] == lrs[3] == lrs[5] == pytest.approx(0.0055)
    # no temporary files left behind
    assert not [p for p in phase.rglob(".tmp-*")]


def _fake_pseudo_labels(workspace: Path, round_dir: str) -> None:
    """Pseudo-labels for the synthetic test tiles (arbitrary blobs; only the mechanics matter)."""
    from saltseg.core.rle import encode
    from saltseg.data.tiles import TGSDirectory

    ids = TGSDirectory(workspace / "data").test_ids()
    rng = np.random.default_rng(0)
    rows = []
    for i, tid in enumerate(ids):
        m = np.zeros((101, 101), bool)
        if i % 2:
            m[int(rng.integers(30, 90)) :, :] = True
        rows.append({"id": tid, "rle_mask": encode(m), "fold": i % 5})
    out = workspace / "predictions" / round_dir
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "pseudo_labels.csv", index=False)


def test_pretrain_then_finetune_with_pseudo_labels(workspace: Path) -> None:
    _fake_pseudo_labels(workspace, "pseudo/round1_bes")
    settings = load_settings(workspace / "SETTINGS.json")
    recipe = load_stage("bes", "stage2", "tiny").model_copy(
        update={"max_train_tiles": 16, "max_pseudo_tiles": 16, "max_val_tiles": 16}
    )
    results = train_stage(recipe, settings, profile="tiny", verbose=0)
    stage = workspace / "bes" / "weights" / "stage2"
    assert [r.name for r in results["pretrain"]] == ["pseudo_bce_dice", "pseudo_lovasz"]
    assert [r.name for r in results["fold_0"]] == ["finetune", "snapshots"]
    for phase in ("pseudo_bce_dice", "pseudo_lovasz"):
        assert (stage / "pretrain" / phase / "DONE.json").is_file()
    assert (stage / "fold_0" / "snapshots" / "snapshot_1.weights.h5").is_file()


def test_deep_supervision_stage_with_pseudo_labels(workspace: Path) -> None:
    _fake_pseudo_labels(workspace, "pseudo/round1_phalanx")
    settings = load_settings(workspace / "SETTINGS.json")
    recipe = load_stage("phalanx", "stage2", "tiny").model_copy(
        update={"max_train_tiles": 16, "max_pseudo_tiles": 8, "max_val_tiles": 16}
    )
    results = train_stage(recipe, settings, profile="tiny", verbose=0)
    log = _log(workspace / "phalanx" / "weights" / "stage2" / "fold_0" / "cycles")
    assert len(log) == 2 and all(np.isfinite(r["loss"]) for r in log)
    assert results["fold_0"][0].epochs == 2


@pytest.mark.parametrize(
    ("family", "stage", "loss", "optimizer", "lr"),
    [("bes", "stage1", "bce_dice", "rmsprop", 1e-3), ("phalanx", "stage3", "bce", "adam", 1e-3)],
)
def test_tiny_networks_learn(learn_workspace: Path, family, stage, loss, optimizer, lr) -> None:
    """The loss falls and the validation metric beats the all-empty prediction.

    The tiny profile with its first phase made long enough to learn on 2 CPU cores in about
    two minutes: 10 epochs, no augmentation, a 10x learning rate (the recipes' rates are
    for ~100 epochs) and, for phalanx, BCE in place of Lovasz (the Lovasz hinge alone learns
    very slowly from random weights).
    """
    from saltseg.core.metric import score
    from saltseg.data.tiles import TGSDirectory

    settings = load_settings(learn_workspace / "SETTINGS.json")
    recipe = load_stage(family, stage, "tiny")
    first = recipe.phases[0]
    phase = first.model_validate(
        {
            **first.model_dump(),
            "loss": loss,
            "optimizer": {"name": optimizer, "lr": lr},
            "schedule": "constant",
            "plateau": None,
            "cosine": None,
            "epochs": 10,
            "early_stopping": None,
            "init": "scratch",
            "augmentation": "none",
            "batch_size": 16,
        }
    )
    recipe = recipe.model_copy(
        update={"phases": [phase], "pretrain": [], "max_train_tiles": None, "max_val_tiles": None}
    )
    result = train_stage(recipe, settings, profile="tiny", verbose=0)["fold_0"][0]
    log = _log(result.folder)
    assert len(log) == 10
    assert log[-1]["loss"] < 0.7 * log[0]["loss"]
    data = TGSDirectory(learn_workspace / "data")
    from saltseg.data.folds import depth_folds

    train = data.load_train()
    val = depth_folds(train.ids, data.depths()) == 0
    baseline = score(train.masks[val], np.zeros_like(train.masks[val]))
    assert result.best_score > baseline + 0.05, (result.best_score, baseline, log)


def test_budget_rescales_the_chain_and_ends_on_time(workspace: Path, capsys) -> None:
    """The cpu profile's BCE+Dice and Lovasz phases and a self-labelling one under a
    wall-clock budget: the first epoch measures the speed, the epochs are re-planned
    (cosine cycles keep their snapshots), validation runs only on the planned epochs, the
    last phase first labels test tiles with the weights it starts from and trains on them
    too, and the chain ends within the budget (plus one epoch's slack)."""
    settings = load_settings(workspace / "SETTINGS.json")
    base = load_stage("phalanx", "stage1", "cpu")
    bce, lov = (
        p.model_copy(update={"batch_size": 8, "validate_every": 2}) for p in base.phases[:2]
    )
    bce = bce.model_copy(update={"cosine": bce.cosine.model_copy(update={"cycle_epochs": [40]})})
    self_ = lov.model_copy(
        update={
            "name": "lovasz_self",
            "init": "previous_last",
            "data": "folds+self",
            "self_labels": SelfLabelConfig(tiles=24),
            "cosine": lov.cosine.model_copy(update={"cycle_epochs": [20]}),
        }
    )
    lov = lov.model_copy(
        update={"cosine": lov.cosine.model_copy(update={"cycle_epochs": [20, 20]})}
    )
    recipe = base.model_copy(
        update={
            "stage": "budget_test",
            "model": "phalanx-v5-tiny",
            "phases": [bce, lov, self_],
            "max_train_tiles": 48,
            "max_val_tiles": 16,
        }
    )
    minutes = 2.5
    t0 = time.perf_counter()
    results = train_stage(recipe, settings, profile="cpu", verbose=0, budget_minutes=minutes)
    took = time.perf_counter() - t0
    fold = workspace / "phalanx" / "weights" / "budget_test" / "fold_0"
    budget = json.loads((fold / "budget.json").read_text())
    assert budget["budget_s"] == 150 and budget["tile_s"] > 0 and budget["val_s"] > 0
    assert budget["spent_s"] == pytest.approx(took, abs=10)
    out = capsys.readouterr().out
    assert "budget plan:" in out
    logs = [_log(fold / p.name) for p in recipe.phases]
    slowest = max(r["seconds"] for log in logs for r in log)
    assert took < 60 * minutes + slowest + 15, (took, logs)
    # far fewer epochs than the nominal 40 + 40 + 20; later phases planned at their start
    done = json.loads((fold / "lovasz" / "DONE.json").read_text())
    bce_log, lov_log, self_log = logs
    assert 1 <= len(bce_log) < 40 and 1 <= len(lov_log) <= sum(done["cycle_epochs"]) < 40
    assert 1 <= len(self_log) < 20
    # two cycles, or fewer when the budget cut the phase short (it then ends on a cycle end)
    assert 1 <= len(done["cycle_epochs"]) <= 2 and done["epochs"] == len(lov_log)
    assert (fold / "lovasz" / "snapshot_0.weights.h5").is_file()
    # validation on the planned epochs only: every 2nd, each cycle's end and the last
    ends = set(np.cumsum(done["cycle_epochs"]))
    for r in lov_log:
        planned = r["epoch"] % 2 == 0 or r["epoch"] in ends
        assert ("val_score" in r) == planned or r is lov_log[-1], lov_log
    assert [r.name for r in results["fold_0"]] == ["bce_dice", "lovasz", "lovasz_self"]
    # self-labelling: 24 of the 40 test tiles, labelled by lovasz's last weights
    labels = fold / "lovasz_self" / "self_labels"
    info = json.loads((labels / "DONE.json").read_text())
    assert info["weights"] == str(fold / "lovasz" / "last.weights.h5")
    assert info["tiles"] + info["black_left_out"] == 24
    assert len(pd.read_csv(labels / "pseudo_labels.csv")) == info["tiles"]
    assert f"[phalanx/budget_test fold 0 lovasz_self]: {48 + info['tiles']} train tiles" in out
    assert (fold / "lovasz_self" / "snapshot_0.weights.h5").is_file()
    # the cpu profile's precision, resolved for this machine's CPU, is logged with the run
    cfg = yaml.safe_load((fold / "config.yaml").read_text())
    assert cfg["recipe"]["precision"] == recipe.precision
    assert cfg["precision"] == resolve_precision(recipe.precision)


def test_budget_guard_shortens_then_stops(tmp_path: Path) -> None:
    """Behind its plan, the last phase is cut to the epochs that still fit (its cosine
    cycle truncated, so it still anneals); with less than one epoch left it stops."""
    from types import SimpleNamespace

    from saltseg.train.budget import Budget, BudgetGuard, truncate_cycles

    assert truncate_cycles([5, 5], 7) == [5, 2] and truncate_cycles([5, 5], 5) == [5]
    assert truncate_cycles([5, 5], 10) == [5, 5] and truncate_cycles([9], 3) == [3]
    budget = Budget(100.0, tmp_path / "budget.json")
    asked: list[tuple[int, int]] = []
    planned = {"last": 9}  # 0-based last epoch of the plan

    def shorten(epoch: int, fit: int) -> int | None:  # as run_phase's: never lengthens
        asked.append((epoch, fit))
        if epoch + fit >= planned["last"]:
            return None
        planned["last"] = epoch + fit
        return planned["last"]

    guard = BudgetGuard(
        budget, SimpleNamespace(median=0.1), SimpleNamespace(seconds=1.0), 8, lambda: 20.0, shorten
    )
    model = SimpleNamespace(stop_training=False)
    guard.set_model(model)
    guard.on_epoch_end(0)
    assert asked == [(0, 4)] and guard.last_epoch == 4 and not model.stop_training
    guard.on_epoch_end(3)
    assert not model.stop_training
    guard.on_epoch_end(4)
    assert model.stop_training
    assert json.loads((tmp_path / "budget.json").read_text())["tile_s"] == pytest.approx(0.1 / 8)
    late = BudgetGuard(
        Budget(10.0, tmp_path / "b2.json"), guard.timer, guard.validation, 8, lambda: 20.0, shorten
    )
    late.set_model(model := SimpleNamespace(stop_training=False))
    late.on_epoch_end(0)
    assert model.stop_training and len(asked) == 2


def test_per_step_cosine_reaches_lr_min_at_the_cycle_end(tmp_path: Path) -> None:
    from saltseg.train.callbacks import CosineSchedule

    per_epoch = CosineSchedule([2, 2], 1.0, 0.0, tmp_path)
    assert [per_epoch.lr_at(e) for e in range(4)] == pytest.approx([1, 0.5, 1, 0.5])
    per_step = CosineSchedule([2, 2], 1.0, 0.0, tmp_path, steps_per_epoch=3)
    lrs = [per_step.lr_at(e, b) for e in range(4) for b in range(3)]
    assert lrs[0] == lrs[6] == pytest.approx(1.0) and lrs[5] == lrs[11] == pytest.approx(0.0)
    assert np.all(np.diff(lrs[:6]) < 0)
    per_step.set_cycles([1, 3])
    assert per_step.cycle_end(0) and not per_step.cycle_end(1) and per_step.cycle_end(3)


def test_a_warm_started_phase_gets_a_fresh_optimizer(tmp_path: Path) -> None:
    """The previous phase's weights file holds its optimizer state too: a phase starts from
    its network weights only, with the optimizer built (one trace) at step 0."""
    import keras

    from saltseg.infer.networks import build_model, save_weights
    from saltseg.nets.zoo import get_model_spec
    from saltseg.train.phase import start_fresh

    spec = get_model_spec("phalanx-v5-tiny")
    before = build_model(spec)
    x = np.random.default_rng(0).uniform(0, 255, (4, *before.input_shape[1:]))
    x = x.astype("float32")
    y = (x[..., :1] > 128).astype("float32")
    before.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    before.train_on_batch(x, y)
    before.train_on_batch(x, y)
    path = tmp_path / "last.weights.h5"
    save_weights(before, path)
    after = build_model(spec)
    after.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    start_fresh(after, path)
    assert after.optimizer.built and int(after.optimizer.iterations.numpy()) == 0
    moments = [v for v in after.optimizer.variables if "momentum" in v.path or "velocity" in v.path]
    assert moments and all(not np.any(v.numpy()) for v in moments)
    for a, b in zip(before.get_weights(), after.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
