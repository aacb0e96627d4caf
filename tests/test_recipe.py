from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from saltseg.errors import ConfigError
from saltseg.recipe import list_stages, load_recipe, load_stage, recipe_path

STAGES = [
    ("bes", "stage1"),
    ("bes", "stage2"),
    ("phalanx", "stage1"),
    ("phalanx", "stage2"),
    ("phalanx", "stage3"),
]


def test_all_stages_listed() -> None:
    assert list_stages("bes") == ["stage1", "stage2"]
    assert list_stages("phalanx") == ["stage1", "stage2", "stage3"]


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
    assert b2.phases[0].init == "pretrain" and b2.phases[0].plateau.patience == 8
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


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(recipe_path("bes", "stage1").read_text())
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
