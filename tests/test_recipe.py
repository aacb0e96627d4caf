from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from saltseg.config.recipe import SelfLabelConfig, list_stages, load_recipe, load_stage, recipe_path
from saltseg.core.errors import ConfigError

STAGES = [
    ("bes", "stage1"),
    ("bes", "stage2"),
    ("phalanx", "stage1"),
    ("phalanx", "stage2"),
    ("phalanx", "stage3"),
]


def test_all_stages_listed() -> None:
    assert list_stages("bes") == ["original", "stage1", "stage2"]
    assert list_stages("phalanx") == ["original", "original_gated", "stage1", "stage2", "stage3"]


@pytest.mark.parametrize(("family", "stage"), STAGES)
def test_recipes_load_with_every_profile(family: str, stage: str) -> None:
    full = load_stage(family, stage)
    assert full.family == family and full.stage == stage and full.folds == [0, 1, 2, 3, 4]
    tiny = load_stage(family, stage, "tiny")
    assert tiny.model.endswith("-tiny")
    # tiny overrides sizes and epochs only: same losses, optimisers, schedules
    for a, b in zip(full.pretrain + full.phases, tiny.pretrain + tiny.phases, strict=True):
        assert (a.name, a.loss, a.optimizer, a.schedule, a.init, a.data) == (
            b.name,
            b.loss,
            b.optimizer,
            b.schedule,
            b.init,
            b.data,
        )
        assert b.total_epochs <= 2


def test_method_spec_numbers() -> None:
    b1 = load_stage("bes", "stage1")
    bce, lov, snap = b1.phases
    assert (bce.loss, bce.optimizer.name, bce.optimizer.lr, bce.batch_size) == (
        "bce_dice",
        "rmsprop",
        1e-4,
        24,
    )
    assert (bce.plateau.factor, bce.plateau.patience, bce.early_stopping, bce.epochs) == (
        0.25,
        10,
        20,
        125,
    )
    assert (lov.loss, lov.optimizer.lr, lov.plateau.factor, lov.plateau.patience) == (
        "lovasz_elu",
        5e-5,
        0.5,
        7,
    )
    assert lov.early_stopping == 15
    assert snap.cosine.cycle_epochs == [40, 40, 40] and snap.cosine.lr_max == 1e-4
    b2 = load_stage("bes", "stage2")
    assert [p.data for p in b2.pretrain] == ["pseudo", "pseudo"]
    # the per-fold fine-tuning starts from the pretraining's best (docs/fidelity.md)
    assert b2.phases[0].init == "pretrain_best" and b2.phases[0].plateau.patience == 8
    assert b2.phases[1].cosine.cycle_epochs == [20, 20, 25]
    p1 = load_stage("phalanx", "stage1").phases[0]
    assert (p1.loss, p1.optimizer.name, p1.optimizer.momentum, p1.optimizer.weight_decay) == (
        "lovasz",
        "sgd",
        0.9,
        1e-4,
    )
    assert p1.cosine.cycle_epochs == [50] * 6 and (p1.cosine.lr_max, p1.cosine.lr_min) == (
        0.012,
        0.001,
    )
    assert p1.batch_size == 18
    p2 = load_stage("phalanx", "stage2")
    assert p2.model == "phalanx-v3" and p2.phases[0].loss == "deep_supervision"
    assert p2.phases[0].data == "folds+pseudo" and p2.phases[0].cosine.cycle_epochs == [50] * 4
    p3 = load_stage("phalanx", "stage3")
    assert p3.model == "phalanx-v5" and p3.pretrain[0].cosine.epochs == 150
    assert p3.pretrain[0].batch_size == 64 and p3.phases[0].cosine.epochs == 200


def _write(tmp_path: Path, mutate, source: Path | None = None) -> Path:
    data = yaml.safe_load((source or recipe_path("bes", "stage1")).read_text())
    mutate(data)
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(learning_rate=1), "unknown key 'learning_rate'"),
        (lambda d: d["phases"][0].update(batch_size="big"), r"key 'phases.0.batch_size'"),
        (lambda d: d["phases"][0]["optimizer"].update(lr=-1), r"phases.0.optimizer.lr"),
        (lambda d: d["phases"][0].update(loss="focal"), r"phases.0.loss"),
        (lambda d: d["phases"][0].update(schedule="cosine"), "needs a 'cosine' block"),
        (lambda d: d["phases"][2].update(epochs=7), "sum of cycle_epochs"),
        (lambda d: d.update(folds=[0, 7]), r"folds \[7\] outside"),
        (lambda d: d["phases"][1].update(data="pseudo"), "'pseudo_labels' is not set"),
        (lambda d: d["profiles"]["tiny"].update(epochs=3), r"profiles.tiny.epochs"),
    ],
)
def test_invalid_recipes_name_the_key(tmp_path: Path, mutate, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_recipe(_write(tmp_path, mutate))


def test_unknown_stage_and_profile() -> None:
    with pytest.raises(ConfigError, match="no stage 'stage9'"):
        load_stage("bes", "stage9")
    with pytest.raises(ConfigError, match="no profile 'huge'"):
        load_stage("bes", "stage1", "huge")


def test_cpu_profile_has_its_own_phases_and_budget() -> None:
    full = load_stage("phalanx", "stage1")
    cpu = load_stage("phalanx", "stage1", "cpu")
    assert cpu.model == "phalanx-v5-cpu" and cpu.folds == [0] and cpu.budget_minutes == 30
    assert full.budget_minutes is None and [p.name for p in full.phases] == ["cycles"]
    bce, lov = cpu.phases
    assert (bce.loss, bce.init, bce.schedule) == ("bce_dice", "scratch", "cosine")
    assert (lov.loss, lov.init, lov.cosine.per_step) == ("lovasz", "previous_last", True)
    assert not load_stage("phalanx", "stage1").phases[0].cosine.per_step
    assert cpu.pretrain == [] and [w.phase for w in cpu.predict] == ["lovasz"]
    assert all(p.validate_every > 1 for p in cpu.phases)
    # measured: the phalanx augmentation lets the cpu network over-fit in 30 minutes
    assert [p.augmentation for p in cpu.phases] == ["bes", "bes"]


def test_self_labels_are_validated(tmp_path: Path) -> None:
    def phases(**last: object) -> Callable[[dict], None]:
        def mutate(d: dict) -> None:
            first = d["profiles"]["cpu"]["phases"][0]
            d["profiles"]["cpu"]["phases"] = [first, {**first, "name": "y", **last}]
            d["profiles"]["cpu"]["predict"] = []

        return mutate

    path = recipe_path("phalanx", "stage1")
    ok = phases(data="folds+self", self_labels={"tiles": 10}, init="previous_last")
    recipe = load_recipe(_write(tmp_path, ok, path), "cpu")
    assert recipe.phases[1].self_labels.threshold == 0.5
    for bad, message in [
        (phases(data="folds+self", init="previous_last"), "go together"),
        (phases(self_labels={"tiles": 10}, init="previous_last"), "go together"),
        (phases(data="folds+self", self_labels={"tiles": 10}), "needs 'init' from a phase"),
        (phases(data="folds+self", self_labels={"tiles": 0}, init="previous_last"), "tiles"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_recipe(_write(tmp_path, bad, path), "cpu")

    def first_phase(d: dict) -> None:
        first = d["profiles"]["cpu"]["phases"][1]
        d["profiles"]["cpu"]["phases"] = [
            {**first, "data": "folds+self", "self_labels": {"tiles": 5}}
        ]
        d["profiles"]["cpu"]["predict"] = []

    with pytest.raises(ConfigError, match="needs a phase before it"):
        load_recipe(_write(tmp_path, first_phase, path), "cpu")


def test_profile_phases_are_validated(tmp_path: Path) -> None:
    def mutate(d: dict) -> None:
        d["profiles"]["cpu"] = {
            "phases": [{**d["phases"][0], "name": "x", "validate_every": 2}],
        }

    with pytest.raises(ConfigError, match="plateau and early stopping need 'validate_every: 1'"):
        load_recipe(_write(tmp_path, mutate), "cpu")

    def unknown(d: dict) -> None:
        d["profiles"]["cpu"] = {"phases": [{**d["phases"][2], "name": "x", "lr": 1}]}

    with pytest.raises(ConfigError, match=r"profiles.cpu.phases.0.lr"):
        load_recipe(_write(tmp_path, unknown), "cpu")


def test_profile_phases_drop_pretrain_and_reset_predict(tmp_path: Path) -> None:
    def mutate(d: dict) -> None:
        d["profiles"]["cpu"] = {"phases": [d["phases"][-1] | {"init": "scratch"}]}

    path = tmp_path / "s2.yaml"
    data = yaml.safe_load(recipe_path("bes", "stage2").read_text())
    mutate(data)
    data["profiles"]["cpu"]["phases"][0]["data"] = "folds"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path, "cpu")
    assert recipe.pretrain == [] and [p.name for p in recipe.phases] == ["snapshots"]
    assert recipe.predict == []


def test_scale_phase_keeps_cycle_proportions() -> None:
    from saltseg.train.budget import scale_phase, validated_epochs

    lov = load_stage("phalanx", "stage1", "cpu").phases[1]
    lov = lov.model_copy(
        update={
            "cosine": lov.cosine.model_copy(update={"cycle_epochs": [6, 6]}),
            "validate_every": 3,
        }
    )
    assert scale_phase(lov, 9).cosine.cycle_epochs == [5, 4]
    assert scale_phase(lov, 20).cosine.cycle_epochs == [10, 10]
    assert scale_phase(lov, 1).cosine.cycle_epochs == [1, 1]  # one epoch per cycle at least
    uneven = lov.model_copy(
        update={"cosine": lov.cosine.model_copy(update={"cycle_epochs": [20, 20, 25]})}
    )
    assert scale_phase(uneven, 13).cosine.cycle_epochs == [4, 4, 5]
    assert validated_epochs(scale_phase(lov, 9)) == [2, 4, 5, 8]
    bce = load_stage("bes", "stage1").phases[0]
    assert scale_phase(bce, 7).epochs == 7


def test_budget_plan_fits_the_time_left(tmp_path: Path) -> None:
    from saltseg.train.budget import Budget

    bce, lov = load_stage("phalanx", "stage1", "cpu").phases[:2]
    phases = [  # 12 + 12 nominal epochs, validation every 4 and 3 epochs
        bce.model_copy(
            update={
                "cosine": bce.cosine.model_copy(update={"cycle_epochs": [12]}),
                "validate_every": 4,
            }
        ),
        lov.model_copy(
            update={
                "cosine": lov.cosine.model_copy(update={"cycle_epochs": [6, 6]}),
                "validate_every": 3,
            }
        ),
    ]
    budget = Budget(600.0, tmp_path / "budget.json")
    assert budget.plan(phases, [1600, 1600]) == phases  # nothing measured: unchanged
    budget.observe(step_s=1.6, batch=16, val_s=4.0)  # 100 steps -> 160 s an epoch
    planned = budget.plan(phases, [1600, 1600])
    total = [p.total_epochs for p in planned]
    assert total == [1, 2]  # ~575 s left: 1 + 2 epochs plus validations and overheads
    budget.seconds = 3600.0
    planned = budget.plan(phases, [1600, 1600])
    work = sum(budget.epoch_seconds(p, 1600) * p.total_epochs for p in planned)
    assert 0.8 * 3600 < work < 3600 and planned[0].total_epochs == planned[1].total_epochs
    budget.save()
    again = Budget(3600.0, tmp_path / "budget.json")
    assert again.spent() >= budget.spent_before and again.tile_s == pytest.approx(0.1)
    assert json.loads((tmp_path / "budget.json").read_text())["val_s"] == 4.0


def test_budget_plan_counts_self_labelling(tmp_path: Path) -> None:
    """Labelling test tiles in a later phase is planned from the measured speed (a forward
    pass ~1/3 of a training step, x2 with flip TTA), so the chain still ends on time."""
    from saltseg.train.budget import Budget

    bce, lov = load_stage("phalanx", "stage1", "cpu").phases[:2]
    self_ = lov.model_copy(
        update={"data": "folds+self", "self_labels": SelfLabelConfig(tiles=2500)}
    )
    budget = Budget(1800.0, tmp_path / "budget.json")
    budget.observe(step_s=0.32, batch=16, val_s=6.0)  # 0.02 s a training tile
    assert budget.label_seconds(lov) == 0.0
    assert budget.label_seconds(self_) == pytest.approx(2500 * 2 * 0.02 / 3 + 10.0)
    tiles = [2500, 2500, 2500 + self_.self_labels.tiles]
    planned = budget.plan([bce, lov, self_], tiles)
    pairs = zip(planned, tiles, strict=True)
    work = sum(budget.epoch_seconds(p, n) * p.total_epochs for p, n in pairs)
    assert 0.8 * 1800 < work + budget.label_seconds(self_) < budget.remaining()
    unlabelled = self_.model_copy(update={"self_labels": None, "data": "folds"})
    without = budget.plan([bce, lov, unlabelled], tiles)
    assert sum(p.total_epochs for p in without) >= sum(p.total_epochs for p in planned)
    # once labelled (the current phase), its labelling is no longer planned
    assert budget.plan([self_], tiles[2:])[0].total_epochs >= planned[2].total_epochs


@pytest.mark.parametrize(("family", "stage"), STAGES)
def test_demo_profile_trains_small_networks_with_the_stage_structure(
    family: str, stage: str
) -> None:
    from saltseg.nets.zoo import MODELS

    full = load_stage(family, stage)
    demo = load_stage(family, stage, "demo")
    assert demo.model.endswith("-demo") and MODELS[demo.model].input_size == 128
    assert demo.folds == [0] and demo.pseudo_labels == full.pseudo_labels
    # Round 2 and 3 train on the pseudo-labels too; every phase annealed per step.
    assert not demo.pretrain
    uses_pseudo = any("pseudo" in p.data for p in demo.phases)
    assert uses_pseudo == (full.pseudo_labels is not None)
    assert demo.phases[-1].loss == full.phases[-1].loss
    for phase in demo.pretrain + demo.phases:
        assert phase.optimizer.name == "adam" and phase.cosine and phase.cosine.per_step
        assert phase.total_epochs <= 6
    assert {w.phase for w in demo.predict} <= {p.name for p in demo.phases}
