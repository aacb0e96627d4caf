"""Stage recipes: the YAML files in ``bes/configs`` and ``phalanx/configs``.

A recipe describes one training stage of a family (e.g. b.e.s. stage 1): the network, the
folds, optional fold-independent ``pretrain`` phases (trained on pseudo-labels only) and the
per-fold ``phases`` run one after another, each warm-started from the one before. Every
recipe has the paper's settings at top level and ``profiles`` (``tiny``, ``cpu``) that
override sizes and epochs only. Unknown keys and wrong types are errors naming the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from saltseg.config.precision import Precision
from saltseg.core.errors import ConfigError
from saltseg.core.registry import GROUPS, REGISTRY, get_family


def _registered(group: str, name: str) -> str:
    """``name`` if the registry has it in ``group`` (else a ValueError naming the known)."""
    if name not in REGISTRY.names(group):
        known = ", ".join(REGISTRY.names(group))
        raise ValueError(f"unknown {GROUPS[group]} {name!r}; known: {known}")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptimizerConfig(_Strict):
    """Optimiser and its base learning rate."""

    name: Literal["rmsprop", "sgd", "adam"]
    lr: float = Field(gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    weight_decay_mode: Literal["decoupled", "coupled"] = Field(
        "decoupled",
        description="decoupled: Keras' weight_decay (w -= lr * wd * w beside the update); "
        "coupled: PyTorch SGD's L2 term (wd * w added to the gradient, so it goes through "
        "momentum; the original phalanx), sgd only",
    )
    nesterov: bool = False

    @model_validator(mode="after")
    def _coupled_is_sgd(self) -> OptimizerConfig:
        if self.weight_decay_mode == "coupled" and self.name != "sgd":
            raise ValueError(f"weight_decay_mode 'coupled' is implemented for sgd, not {self.name}")
        return self


class PlateauConfig(_Strict):
    """Reduce the learning rate by ``factor`` after ``patience`` epochs without improvement."""

    factor: float = Field(gt=0, lt=1)
    patience: int = Field(ge=1)
    min_lr: float = Field(1e-7, ge=0)


class CosineConfig(_Strict):
    """Cosine annealing cycles from ``lr_max`` to ``lr_min``; a snapshot at each cycle end."""

    cycle_epochs: list[int] = Field(min_length=1)
    lr_max: float = Field(gt=0)
    lr_min: float = Field(0.0, ge=0)
    per_step: bool = Field(
        False,
        description="anneal at every step, reaching lr_min at the cycle's end (default: once "
        "an epoch, as the original; short cycles then end well above lr_min)",
    )
    cycle_best: bool = Field(
        False,
        description="keep each cycle's best-validation weights (cycle_best_<c>.weights.h5) "
        "and start every cycle after the first from the previous cycle's best, as the "
        "original b.e.s. ran each cycle as its own run from the previous run's best file",
    )

    @property
    def epochs(self) -> int:
        return sum(self.cycle_epochs)


class SelfLabelConfig(_Strict):
    """Pseudo-labels made inside the run: at the start of its phase, the weights it starts
    from (its ``init``) label ``tiles`` test tiles (a seeded sample; black tiles left out), with
    horizontal-flip TTA, as ``p > threshold``; the phase trains on the fold's tiles and them.
    """

    tiles: int = Field(ge=1, description="test tiles to label (all of them when fewer)")
    flip_tta: bool = True
    threshold: float = Field(0.5, gt=0, lt=1)


class PhaseConfig(_Strict):
    """One ``fit``: loss, optimiser, schedule, data and how it is initialised."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    loss: str = Field(description="a registered loss: bce, bce_dice, lovasz, lovasz_elu, ...")
    optimizer: OptimizerConfig
    batch_size: int = Field(ge=1)
    epochs: int | None = Field(None, ge=1, description="max epochs (plateau/constant phases)")
    schedule: Literal["constant", "plateau", "cosine"]
    plateau: PlateauConfig | None = None
    cosine: CosineConfig | None = None
    early_stopping: int | None = Field(None, ge=1, description="patience in epochs")
    init: Literal["scratch", "previous_best", "previous_last", "pretrain", "pretrain_best"] = (
        "previous_best"
    )
    data: Literal["folds", "pseudo", "folds+pseudo", "folds+self"] = "folds"
    self_labels: SelfLabelConfig | None = Field(
        None, description="with data 'folds+self': the test tiles this phase labels first"
    )
    augmentation: str = Field(description="a registered augmentation: none, bes, phalanx, ...")
    sampling: Literal["epoch", "replacement"] = Field(
        "epoch",
        description="epoch: each epoch is a shuffled pass over the tiles; replacement: every "
        "batch draws its tiles at random with replacement (the original b.e.s. generator)",
    )
    epoch_passes: int = Field(
        1, ge=1, description="steps per epoch = tiles // batch * epoch_passes (b.e.s.: 2)"
    )
    validate_every: int = Field(
        1, ge=1, description="validate every k epochs (and at each cycle's and the phase's end)"
    )

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str) -> str:
        return _registered("losses", value)

    @field_validator("augmentation")
    @classmethod
    def _known_augmentation(cls, value: str) -> str:
        return _registered("augmentations", value)

    @model_validator(mode="after")
    def _consistent(self) -> PhaseConfig:
        if self.schedule == "cosine":
            if self.cosine is None:
                raise ValueError(f"phase {self.name!r}: schedule 'cosine' needs a 'cosine' block")
            if self.epochs is not None and self.epochs != self.cosine.epochs:
                raise ValueError(
                    f"phase {self.name!r}: epochs {self.epochs} != sum of cycle_epochs "
                    f"{self.cosine.epochs}"
                )
        else:
            if self.epochs is None:
                raise ValueError(f"phase {self.name!r}: 'epochs' is required")
            if self.cosine is not None:
                raise ValueError(f"phase {self.name!r}: 'cosine' given but schedule is not cosine")
        if (self.data == "folds+self") != (self.self_labels is not None):
            raise ValueError(
                f"phase {self.name!r}: data 'folds+self' and a 'self_labels' block go together"
            )
        if self.self_labels is not None and self.init == "scratch":
            raise ValueError(f"phase {self.name!r}: self-labelling needs 'init' from a phase")
        if self.schedule == "plateau" and self.plateau is None:
            raise ValueError(f"phase {self.name!r}: schedule 'plateau' needs a 'plateau' block")
        if self.validate_every > 1 and (self.schedule == "plateau" or self.early_stopping):
            raise ValueError(
                f"phase {self.name!r}: plateau and early stopping need 'validate_every: 1'"
            )
        return self

    @property
    def total_epochs(self) -> int:
        return self.cosine.epochs if self.cosine is not None else int(self.epochs or 0)


class ProfileConfig(_Strict):
    """Overrides of a profile: sizes and lengths (``tiny``: proves the code runs on a CPU),
    and for ``cpu`` its own ``phases`` (validated like the recipe's), the weights that
    predict and a default wall-clock ``budget_minutes`` per fold that rescales the epochs.
    """

    model: str | None = None
    folds: list[int] | None = None
    batch_size: int | None = Field(None, ge=1)
    max_epochs: int | None = Field(None, ge=1, description="cap on plateau/constant phases")
    cycle_epochs: int | None = Field(None, ge=1, description="every cosine cycle's length")
    max_cycles: int | None = Field(None, ge=1)
    patience: int | None = Field(None, ge=1, description="plateau and early-stopping patience")
    max_train_tiles: int | None = Field(None, ge=1)
    max_pseudo_tiles: int | None = Field(None, ge=1)
    max_val_tiles: int | None = Field(None, ge=1)
    bn_momentum: float | None = Field(
        None, gt=0, lt=1, description="BatchNorm moving-average momentum for short runs"
    )
    precision: Precision | None = None
    phases: list[PhaseConfig] | None = Field(
        None, min_length=1, description="replace the per-fold phases (and drop pretrain)"
    )
    predict: list[PredictWeights] | None = None
    budget_minutes: float | None = Field(
        None, gt=0, description="wall-clock budget per fold; epochs are rescaled to fit it"
    )
    epoch_passes: int | None = Field(None, ge=1, description="every phase's epoch_passes")
    train_black_tiles: bool | None = None


class PredictWeights(_Strict):
    """Weights of one phase that predict: its ``best``/``last`` file, its snapshots (end of
    each cosine cycle) or each cycle's best-validation file (``cycle_best``).

    ``snapshots`` lists cycle indices (``None``: every snapshot the run saved); indices a
    shortened profile did not reach are skipped. ``weight`` is this entry's share of the
    fold's weighted mean (b.e.s. stage 2: the fine-tuned model x3, each snapshot x1).
    """

    phase: str
    file: Literal["best", "last", "snapshots", "cycle_best"] = "snapshots"
    snapshots: list[int] | None = None
    weight: float = Field(1.0, gt=0)
    folds: list[int] | None = Field(
        None, description="the folds this entry predicts for (None: every fold)"
    )


class StageRecipe(_Strict):
    """A training stage of one family."""

    family: str
    stage: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str = ""
    model: str
    n_folds: int = Field(5, ge=2)
    folds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    fold_method: Literal["depth", "coverage"] = "depth"
    seed: int = 0
    pseudo_labels: str | None = Field(
        None, description="pseudo-label folder, relative to PREDICTIONS_DIR"
    )
    pretrain: list[PhaseConfig] = Field(default_factory=list)
    phases: list[PhaseConfig] = Field(min_length=1)
    max_train_tiles: int | None = None
    max_pseudo_tiles: int | None = None
    max_val_tiles: int | None = None
    bn_momentum: float | None = Field(
        None, gt=0, lt=1, description="override every BatchNorm's momentum (None: network's)"
    )
    precision: Precision = Field(
        "float32",
        description="training arithmetic (saltseg.config.precision); auto: bf16 if native",
    )
    predict: list[PredictWeights] = Field(
        default_factory=list, description="weights that predict (empty: each fold's last best)"
    )
    budget_minutes: float | None = Field(
        None, gt=0, description="wall-clock budget per fold (None: run the epochs as written)"
    )
    train_black_tiles: bool = Field(
        False, description="train on black (one-value) tiles too, as the original phalanx did"
    )
    fold_file: str | None = Field(
        None,
        description="a fold-assignment CSV (id,fold[,...]; the original's train_proc_v2_gr.csv "
        "format), relative to DATA_DIR; overrides fold_method",
    )
    model_options: dict[str, float | int | str | bool] = Field(
        default_factory=dict,
        description="keyword arguments of the network's builder (e.g. dropout: 0.0)",
    )
    profiles: dict[str, ProfileConfig] = Field(default_factory=dict)
    imported: bool = Field(
        False,
        description="weights come from `saltseg weights import` (the original published ones): "
        "the phases document how they were trained; training this recipe is refused",
    )
    weights_stage: str | None = Field(
        None,
        pattern=r"^[a-z0-9_]+$",
        description="the stage folder whose weights this recipe uses (default: its own stage)",
    )
    encoder_weights: str | None = Field(
        None,
        description="ImageNet encoder weights for the phases that start from scratch: a local "
        "torchvision resnet34/resnext50_32x4d state_dict (.pth, .safetensors) or the Keras "
        "resnext50_imagenet_1000_no_top.h5 (relative: against the settings file's folder)",
    )
    model_options: dict[str, bool | int | float | str] = Field(
        default_factory=dict,
        description="keyword arguments for the network's builder (e.g. spatial_gate: true)",
    )

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        return _registered("families", value)

    @model_validator(mode="after")
    def _consistent(self) -> StageRecipe:
        bad = [k for k in self.folds if not 0 <= k < self.n_folds]
        if bad:
            raise ValueError(f"folds {bad} outside 0..{self.n_folds - 1}")
        names = [p.name for p in [*self.pretrain, *self.phases]]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")
        uses_pseudo = any(
            p.data in ("pseudo", "folds+pseudo") for p in [*self.pretrain, *self.phases]
        )
        if uses_pseudo and not self.pseudo_labels:
            raise ValueError("a phase trains on pseudo-labels but 'pseudo_labels' is not set")
        for p in self.pretrain:
            if p.data != "pseudo":
                raise ValueError(f"pretrain phase {p.name!r} must use data 'pseudo'")
            if p.init in ("pretrain", "pretrain_best"):
                raise ValueError(f"pretrain phase {p.name!r} cannot init from {p.init!r}")
        if self.phases[0].self_labels is not None:
            raise ValueError(
                f"first phase {self.phases[0].name!r}: self-labelling needs a phase before it"
            )
        if self.phases[0].init in ("previous_best", "previous_last") and not self.pretrain:
            raise ValueError(f"first phase {self.phases[0].name!r} has no previous phase")
        if any(p.init in ("pretrain", "pretrain_best") for p in self.phases) and not self.pretrain:
            raise ValueError("a phase inits from 'pretrain' but there are no pretrain phases")
        phase_names = {p.name for p in self.phases}
        for w in self.predict:
            if w.phase not in phase_names:
                raise ValueError(f"predict: {w.phase!r} is not a per-fold phase of this recipe")
        return self

    def with_profile(self, profile: str) -> StageRecipe:
        """The recipe with a profile's overrides applied (``full``: unchanged)."""
        if profile == "full":
            return self
        if profile not in self.profiles:
            raise ConfigError(
                f"recipe {self.family}/{self.stage} has no profile {profile!r} "
                f"(has: full, {', '.join(self.profiles) or 'nothing else'})"
            )
        o = self.profiles[profile]

        def phase(p: PhaseConfig) -> PhaseConfig:
            upd: dict = {}
            if o.batch_size:
                upd["batch_size"] = o.batch_size
            if o.max_epochs and p.epochs is not None and p.schedule != "cosine":
                upd["epochs"] = min(p.epochs, o.max_epochs)
            if p.cosine is not None and (o.cycle_epochs or o.max_cycles):
                cycles = list(p.cosine.cycle_epochs)[: o.max_cycles or None]
                if o.cycle_epochs:
                    cycles = [min(c, o.cycle_epochs) for c in cycles]
                upd["cosine"] = p.cosine.model_copy(update={"cycle_epochs": cycles})
                upd["epochs"] = None
            if o.patience and p.plateau is not None:
                upd["plateau"] = p.plateau.model_copy(update={"patience": o.patience})
            if o.patience and p.early_stopping is not None:
                upd["early_stopping"] = o.patience
            if o.epoch_passes:
                upd["epoch_passes"] = o.epoch_passes
            return PhaseConfig.model_validate({**p.model_dump(), **upd})

        data = self.model_dump()
        if o.phases is not None:  # the profile's own chain, sized by its own settings
            data.update(
                pretrain=[],
                phases=[phase(p).model_dump() for p in o.phases],
                predict=[] if o.predict is None else [w.model_dump() for w in o.predict],
                profiles={},
            )
        else:
            data.update(
                pretrain=[phase(p).model_dump() for p in self.pretrain],
                phases=[phase(p).model_dump() for p in self.phases],
                profiles={},
            )
            if o.predict is not None:
                data["predict"] = [w.model_dump() for w in o.predict]
        keys = ("model", "folds", "max_train_tiles", "max_pseudo_tiles", "max_val_tiles")
        for key in (*keys, "bn_momentum", "budget_minutes", "precision", "train_black_tiles"):
            value = getattr(o, key)
            if value is not None:
                data[key] = value
        return _validate(data, f"{self.family}/{self.stage} profile {profile!r}")


def _validate(data: object, where: str) -> StageRecipe:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of recipe keys")
    try:  # strict: "18" is not a batch size, 1.5 not an epoch count (no silent coercion)
        return StageRecipe.model_validate(data, strict=True)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(x) for x in err["loc"]) or "<recipe>"
            if err["type"] == "extra_forbidden":
                lines.append(f"{where}: unknown key {key!r}")
            else:
                lines.append(f"{where}: key {key!r}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("\n".join(lines)) from None


def recipe_path(family: str, stage: str) -> Path:
    """``<stage>.yaml`` in the registered family's recipe folder (``<family>/configs``)."""
    return get_family(family).configs_dir / f"{stage}.yaml"


def list_stages(family: str) -> list[str]:
    """Stage names with a recipe for ``family`` (sorted)."""
    folder = recipe_path(family, "x").parent
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_recipe(source: str | os.PathLike[str], profile: str = "full") -> StageRecipe:
    """Load and validate a recipe file, then apply ``profile``."""
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: recipe file is not UTF-8 text (byte {exc.start}: "
            f"{exc.object[exc.start]:#04x})"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return _validate(data, str(path)).with_profile(profile)


def load_stage(family: str, stage: str, profile: str = "full") -> StageRecipe:
    """The recipe of ``family``'s ``stage`` with ``profile`` applied."""
    path = recipe_path(family, stage)
    if not path.is_file():
        stages = ", ".join(list_stages(family)) or "none"
        raise ConfigError(f"{family} has no stage {stage!r} ({path}); stages: {stages}")
    recipe = load_recipe(path, profile)
    if recipe.family != family or recipe.stage != stage:
        raise ConfigError(
            f"{path}: declares family/stage {recipe.family}/{recipe.stage}, "
            f"expected {family}/{stage}"
        )
    return recipe


def resolve_recipe(
    recipe: str | os.PathLike[str] | None,
    family: str | None,
    stage: str | None,
    profile: str = "full",
) -> StageRecipe:
    """The recipe a command names: a YAML file, else a family's stage (CLI ``--recipe`` or
    ``--family``/``--stage``)."""
    if recipe:
        return load_recipe(recipe, profile)
    if family and stage:
        return load_stage(family, stage, profile)
    raise ConfigError("give --family and --stage (or --recipe FILE)")
