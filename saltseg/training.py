"""Staged training: a recipe's phases per fold, resumable, with their outputs on disk.

Layout of a stage's outputs (``WEIGHTS/<stage>/``)::

    pretrain/<phase>/...            fold-independent phases (pseudo-labels only)
    fold_<k>/config.yaml            the resolved recipe, settings and profile of the run
    fold_<k>/<phase>/best.weights.h5        highest validation score of the phase
    fold_<k>/<phase>/last.weights.h5        weights at the end of the phase
    fold_<k>/<phase>/snapshot_<c>.weights.h5  end of each cosine cycle
    fold_<k>/<phase>/log.jsonl      one line per epoch (loss, val_score, lr, seconds)
    fold_<k>/<phase>/DONE.json      written last: the phase is complete
    fold_<k>/<phase>/resume/        per-epoch checkpoint while the phase runs
    fold_<k>/<phase>/self_labels/   a ``self_labels`` phase's test-tile labels (made first)
    fold_<k>/budget.json            with a wall-clock budget: time spent, measured speeds

Running the same command again skips complete phases and folds and resumes a phase from
its last finished epoch.

With a wall-clock budget (``budget_minutes`` of the recipe or profile, or
``saltseg train --budget-minutes``) each fold's chain of phases must end within the budget:
after the first epoch has measured the speed of this machine, the epochs of every phase are
rescaled in proportion to the recipe's (cosine cycles keep their proportions, so each still
ends with its snapshot), re-planned at the start of each phase, and a phase stops early if
not even one more epoch fits. Time spent by killed runs counts (``budget.json``), and so
does a ``self_labels`` phase's labelling of test tiles (planned from the measured speed).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import yaml

from saltseg.adapters import get_adapter
from saltseg.atomic import atomic_write_text
from saltseg.callbacks import (
    BestCheckpoint,
    CosineSchedule,
    EpochLog,
    ResumeState,
    StepTimer,
    ValidationScore,
    load_model_weights,
    save_weights,
)
from saltseg.data import TGSDirectory, TrainSet, read_images
from saltseg.errors import ConfigError, DataError
from saltseg.folds import coverage_folds, depth_folds
from saltseg.losses import get_loss
from saltseg.pipeline import TileSet, TrainBatches
from saltseg.precision import dtype_policy, resolve_precision
from saltseg.recipe import PhaseConfig, StageRecipe
from saltseg.rle import RLEError, decode
from saltseg.self_labels import self_label
from saltseg.settings import Settings
from saltseg.zoo import ModelSpec, get_model_spec

PSEUDO_CSV = "pseudo_labels.csv"


# --------------------------------------------------------------------------- data


@dataclass
class FoldData:
    """What one fold trains and validates on."""

    train: TileSet
    val: TileSet
    val_black: np.ndarray
    pseudo: TileSet | None
    source: TGSDirectory | None = None  # where test tiles to self-label come from
    self_labelled: TileSet | None = None  # set by a phase with ``self_labels``


def fold_assignment(recipe: StageRecipe, data: TGSDirectory, train: TrainSet) -> np.ndarray:
    """Fold of every labelled tile (sorted ids), by the recipe's method."""
    if recipe.fold_method == "depth":
        return depth_folds(train.ids, data.depths(), recipe.n_folds)
    return coverage_folds(train.masks, recipe.n_folds, recipe.seed)


def _limit(n: int, limit: int | None, seed: int, salt: int) -> np.ndarray:
    idx = np.arange(n)
    if limit is None or limit >= n:
        return idx
    return np.sort(np.random.default_rng([seed, salt]).choice(n, size=limit, replace=False))


def load_pseudo_labels(
    folder: Path, test_images_dir: Path, fold: int | None, limit: int | None, seed: int
) -> TileSet:
    """Pseudo-labelled test tiles from ``folder/pseudo_labels.csv`` (``id,rle_mask`` and
    optionally ``fold``: rows of other folds are left out for fold ``fold``)."""
    csv = folder / PSEUDO_CSV
    if not csv.is_file():
        raise DataError(
            f"{csv}: pseudo-labels not found (run the previous round and 'saltseg pseudo' first)"
        )
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    for col in ("id", "rle_mask"):
        if col not in df.columns:
            raise DataError(f"{csv}: missing column {col!r}")
    if "fold" in df.columns and fold is not None:
        df = df[pd.to_numeric(df["fold"], errors="coerce") == fold]
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    df = df.iloc[_limit(len(df), limit, seed, 2)]
    if df.empty:
        raise DataError(f"{csv}: no pseudo-labelled tiles for this run")
    masks = np.zeros((len(df), 101, 101), dtype=bool)
    for i, (tid, r) in enumerate(zip(df["id"], df["rle_mask"], strict=True)):
        try:
            masks[i] = decode(r)
        except RLEError as exc:
            raise DataError(f"{csv}: id {tid!r}: bad rle_mask: {exc}") from None
    ids = df["id"].tolist()
    paths = [test_images_dir / f"{i}.png" for i in ids]
    missing = [i for i, p in zip(ids, paths, strict=True) if not p.is_file()]
    if missing:
        raise DataError(f"{csv}: id {missing[0]!r} has no image in {test_images_dir}")
    return TileSet(ids, read_images(paths), masks)


def prepare_fold(
    recipe: StageRecipe, settings: Settings, fold: int | None, need_pseudo: bool
) -> FoldData:
    """Train/validation tiles of ``fold`` (``None``: validate on every labelled tile)."""
    data = TGSDirectory(settings.data_dir)
    train = data.load_train(verify_rle=False)
    folds = fold_assignment(recipe, data, train)
    is_val = folds == fold if fold is not None else np.ones(len(train), dtype=bool)
    usable = ~is_val & ~train.black  # black tiles never train
    tr_idx = np.flatnonzero(usable)
    tr_idx = tr_idx[_limit(len(tr_idx), recipe.max_train_tiles, recipe.seed, 0)]
    va_idx = np.flatnonzero(is_val)
    va_idx = va_idx[_limit(len(va_idx), recipe.max_val_tiles, recipe.seed, 1)]
    all_tiles = TileSet(train.ids, train.images, train.masks)
    pseudo = None
    if need_pseudo:
        assert recipe.pseudo_labels is not None
        pseudo = load_pseudo_labels(
            settings.predictions_dir / recipe.pseudo_labels,
            data.test_images_dir,
            fold,
            recipe.max_pseudo_tiles,
            recipe.seed,
        )
    return FoldData(
        train=all_tiles.subset(tr_idx),
        val=all_tiles.subset(va_idx),
        val_black=train.black[va_idx],
        pseudo=pseudo,
        source=data,
    )


# --------------------------------------------------------------------------- model


def build_model(
    spec: ModelSpec, bn_momentum: float | None = None, policy: str = "float32"
) -> keras.Model:
    """The recipe's network with a logits head (losses apply the sigmoid themselves).

    ``bn_momentum`` replaces every BatchNorm's moving-average momentum: b.e.s. keeps Keras
    2's 0.99, whose statistics need many hundred steps to settle, too many for a short run.
    ``policy``: the Keras dtype policy of the layers (``saltseg.precision``); the weights
    are float32 whatever it is.
    """
    overrides = {"head": "logits"} if spec.family == "bes" else {}
    with dtype_policy(policy):
        model = spec.build(**overrides)
    if bn_momentum is not None:
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = bn_momentum
    return model


def calibrate_input_batchnorm(model: keras.Model, inputs: np.ndarray) -> bool:
    """Start the moving statistics of an input BatchNorm (``bn_data``) at the data's.

    The b.e.s. network normalises raw 0-255 pixels with a BatchNorm layer whose moving
    mean/variance start at 0/1 and move by 1% a step: for hundreds of steps, inference
    sees badly scaled inputs. Initialising them from a sample of training inputs changes
    nothing once training is long, and makes short (CPU, tiny) runs evaluate sensibly.
    Returns whether the model had such a layer.
    """
    try:
        layer = model.get_layer("bn_data")
    except ValueError:
        return False
    axes = tuple(range(inputs.ndim - 1))
    layer.moving_mean.assign(inputs.mean(axis=axes).astype("float32"))
    layer.moving_variance.assign(inputs.var(axis=axes).astype("float32"))
    return True


def make_optimizer(phase: PhaseConfig) -> keras.optimizers.Optimizer:
    """The phase's optimizer. Weight decay is Keras' decoupled form (the original phalanx
    used PyTorch SGD's L2 form; the two differ slightly under momentum)."""
    o = phase.optimizer
    wd = o.weight_decay or None
    if o.name == "sgd":
        return keras.optimizers.SGD(o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=wd)
    if o.name == "rmsprop":
        return keras.optimizers.RMSprop(o.lr, momentum=o.momentum, weight_decay=wd)
    return keras.optimizers.Adam(o.lr, weight_decay=wd)


def compile_model(model: keras.Model, phase: PhaseConfig) -> None:
    """Compile with the phase's optimizer and loss (a dict of losses for deep supervision)."""
    outputs = list(model.output_names)
    if phase.loss == "deep_supervision" and set(outputs) != {"fused", "pixel", "empty"}:
        raise ConfigError(
            f"phase {phase.name!r}: loss 'deep_supervision' needs a network with outputs "
            f"fused, pixel, empty; this one has {outputs}"
        )
    if phase.loss != "deep_supervision" and len(outputs) != 1:
        raise ConfigError(
            f"phase {phase.name!r}: loss {phase.loss!r} needs a single-output network; "
            f"this one has {outputs}"
        )
    model.compile(optimizer=make_optimizer(phase), loss=get_loss(phase.loss), jit_compile=False)


# --------------------------------------------------------------------------- budget


def validated_epochs(phase: PhaseConfig) -> list[int]:
    """The 0-based epochs after which ``phase`` computes ``val_score``: every
    ``validate_every``-th, the last of each cosine cycle and the phase's last."""
    n = phase.total_epochs
    ends = set(np.cumsum(phase.cosine.cycle_epochs) - 1) if phase.cosine is not None else set()
    return [e for e in range(n) if (e + 1) % phase.validate_every == 0 or e in ends or e == n - 1]


def scale_phase(phase: PhaseConfig, epochs: int) -> PhaseConfig:
    """``phase`` with ``epochs`` epochs; cosine cycles keep their proportions (each >= 1)."""
    if phase.cosine is None:
        return phase.model_copy(update={"epochs": max(1, epochs)})
    nominal = np.asarray(phase.cosine.cycle_epochs, dtype=float)
    epochs = max(len(nominal), epochs)
    cycles = np.maximum(1, np.floor(nominal * epochs / nominal.sum())).astype(int)
    order = np.argsort(-(nominal * epochs / nominal.sum() - cycles), kind="stable")
    i = 0
    while cycles.sum() < epochs:  # hand out what flooring left, largest remainder first
        cycles[order[i % len(cycles)]] += 1
        i += 1
    while cycles.sum() > epochs:
        cycles[int(np.argmax(cycles))] -= 1
    cosine = phase.cosine.model_copy(update={"cycle_epochs": [int(c) for c in cycles]})
    return phase.model_copy(update={"cosine": cosine, "epochs": None})


def truncate_cycles(cycle_epochs: list[int], epochs: int) -> list[int]:
    """The cycles of the first ``epochs`` epochs: the cycle running at the end is cut."""
    out: list[int] = []
    for length in cycle_epochs:
        if sum(out) + length >= epochs:
            out.append(epochs - sum(out))
            break
        out.append(int(length))
    return out


class Budget:
    """A fold chain's wall-clock budget: time spent (persisted, so resumed runs count what
    killed ones spent) and measured speeds, and the epochs that fit in what is left."""

    RESERVE_S = 5.0  # saving the last weights, DONE.json
    DEFAULT_OVERHEAD_S = 25.0  # building, compiling and tracing a phase's network
    FORWARD_SHARE = 1 / 3  # a forward pass's share of a training step (backward ~2x)
    LABEL_OVERHEAD_S = 10.0  # reading test tiles, building the labelling network

    def __init__(self, seconds: float, path: Path) -> None:
        self.seconds = float(seconds)
        self.path = path
        saved = json.loads(path.read_text()) if path.is_file() else {}
        self.spent_before = float(saved.get("spent_s", 0.0))
        self.tile_s: float | None = saved.get("tile_s")  # seconds per training tile
        self.val_s: float | None = saved.get("val_s")  # seconds per validation pass
        self.overhead_s = float(saved.get("overhead_s", self.DEFAULT_OVERHEAD_S))
        self._t0 = time.perf_counter()

    def spent(self) -> float:
        return self.spent_before + time.perf_counter() - self._t0

    def remaining(self) -> float:
        return self.seconds - self.spent()

    def save(self) -> None:
        state = {
            "budget_s": self.seconds,
            "spent_s": round(self.spent(), 2),
            "tile_s": self.tile_s,
            "val_s": self.val_s,
            "overhead_s": round(self.overhead_s, 2),
        }
        atomic_write_text(self.path, json.dumps(state, indent=1))

    def observe(self, step_s: float | None, batch: int, val_s: float | None) -> None:
        if step_s is not None:
            self.tile_s = step_s / batch
        if val_s is not None:
            self.val_s = val_s

    @property
    def measured(self) -> bool:
        return self.tile_s is not None

    def epoch_seconds(self, phase: PhaseConfig, n_tiles: int) -> float:
        steps = max(1, n_tiles // min(phase.batch_size, n_tiles))
        return steps * min(phase.batch_size, n_tiles) * float(self.tile_s or 0.0)

    def label_seconds(self, phase: PhaseConfig) -> float:
        """Estimated time to self-label a phase's test tiles (0 without ``self_labels``)."""
        if phase.self_labels is None:
            return 0.0
        passes = 2 if phase.self_labels.flip_tta else 1
        forward_s = float(self.tile_s or 0.0) * self.FORWARD_SHARE
        return phase.self_labels.tiles * passes * forward_s + self.LABEL_OVERHEAD_S

    def plan(
        self, phases: list[PhaseConfig], n_tiles: list[int], started: int = 0
    ) -> list[PhaseConfig]:
        """``phases`` (the current one first, ``started`` of its epochs done) rescaled to
        the time left. Returns them unchanged until a speed has been measured."""
        if not self.measured:
            return phases
        val_s = float(self.val_s or 0.0)
        avail = self.remaining() - self.RESERVE_S - self.overhead_s * (len(phases) - 1)
        nominal = np.array([p.total_epochs for p in phases], dtype=float)
        nominal[0] = max(nominal[0] - started, 1.0)
        per_epoch = np.array(
            [
                self.epoch_seconds(p, n) + val_s / p.validate_every
                for p, n in zip(phases, n_tiles, strict=True)
            ]
        )
        fixed = val_s * sum(len(p.cosine.cycle_epochs) if p.cosine else 1 for p in phases)
        fixed += sum(self.label_seconds(p) for p in phases[1:])  # the current one's is done
        x = max(0.0, avail - fixed) / float((nominal * per_epoch).sum())
        planned = []
        for i, p in enumerate(phases):
            e = int(np.floor(x * nominal[i]))
            planned.append(scale_phase(p, e + started if i == 0 else e))
        return planned


# --------------------------------------------------------------------------- phases


@dataclass
class PhaseResult:
    name: str
    folder: Path
    best_score: float
    best_epoch: int
    epochs: int
    seconds: float
    skipped: bool


def _done(folder: Path) -> dict[str, Any] | None:
    p = folder / "DONE.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _phase_tiles(phase: PhaseConfig, fold_data: FoldData) -> TileSet:
    parts = []
    if phase.data in ("folds", "folds+pseudo", "folds+self"):
        parts.append(fold_data.train)
    if phase.data == "folds+self":
        if fold_data.self_labelled is None:
            raise ConfigError(f"phase {phase.name!r}: its test tiles are not labelled yet")
        parts.append(fold_data.self_labelled)
    if phase.data in ("pseudo", "folds+pseudo"):
        if fold_data.pseudo is None:
            raise ConfigError(f"phase {phase.name!r} needs pseudo-labels")
        parts.append(fold_data.pseudo)
    return TileSet.concat(parts)


def _planned_tiles(phase: PhaseConfig, fold_data: FoldData) -> int:
    """Tiles of a phase still to come (a self-labelling one: the tiles it will label)."""
    if phase.self_labels is not None and fold_data.self_labelled is None:
        return len(fold_data.train) + phase.self_labels.tiles
    return len(_phase_tiles(phase, fold_data))


class BudgetGuard(keras.callbacks.Callback):
    """Under a wall-clock budget: records speeds and time spent after every epoch, and
    when the plan no longer fits, shortens the phase (``shorten(epoch, epochs_left)``
    returns the new 0-based last epoch or ``None``; it can cut the running cosine cycle so
    that it still anneals and ends with its snapshot) or stops it when not even one more
    epoch fits.

    The speed is each epoch's whole wall time (steps, data waits, callbacks, checkpoints;
    validation left out), measured between the starts of consecutive epochs after the
    first one this guard sees (which traces the graph); until there is one, the median
    steady step time."""

    def __init__(
        self,
        budget: Budget,
        timer: StepTimer,
        validation: ValidationScore,
        batch: int,
        epoch_seconds: Any,
        shorten: Any = None,
        steps: int = 1,
    ) -> None:
        super().__init__()
        self.budget = budget
        self.timer = timer
        self.validation = validation
        self.batch = batch
        self.steps = max(1, int(steps))
        self.epoch_seconds = epoch_seconds  # () -> estimated seconds of the next epoch
        self.shorten = shorten
        self.last_epoch: int | None = None  # 0-based; set when the phase was shortened
        self.epoch_walls: list[float] = []  # seconds of whole epochs, validation left out
        self._began: float | None = None
        self._val_s = 0.0
        self._seen = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        if self._began is not None and self._seen >= 2:
            self.epoch_walls.append(now - self._began - self._val_s)
        self._began = now

    def step_seconds(self) -> float | None:
        """Seconds per training step: recent whole epochs, else the steady step median."""
        if self.epoch_walls:
            return float(np.median(self.epoch_walls[-5:])) / self.steps
        return self.timer.median

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._seen += 1
        logs = logs or {}
        self._val_s = float(logs.get("val_seconds", 0.0)) if "val_score" in logs else 0.0
        self.budget.observe(self.step_seconds(), self.batch, self.validation.seconds)
        self.budget.save()
        if self.last_epoch is not None and epoch >= self.last_epoch:
            self.model.stop_training = True
            return
        left = self.budget.remaining() - Budget.RESERVE_S
        if left < self.epoch_seconds():
            self.model.stop_training = True
        elif self.shorten is not None:
            last = self.shorten(epoch, int(left // self.epoch_seconds()))
            if last is not None:
                self.last_epoch = last


def run_phase(
    phase: PhaseConfig,
    spec: ModelSpec,
    recipe: StageRecipe,
    fold_data: FoldData,
    folder: Path,
    init_weights: Path | None,
    seed: int,
    label: str,
    verbose: int = 2,
    budget: Budget | None = None,
    rest: list[PhaseConfig] | None = None,
) -> PhaseResult:
    """Train one phase into ``folder``; skip it when complete, resume it when started.

    With a ``budget``, the phase and the ``rest`` of the chain are rescaled to the time
    left (after this phase's first epoch when no speed has been measured yet).
    """
    done = _done(folder)
    if done is not None:
        print(f"{label}: complete, skipped (best val_score {done['best_score']:.4f})")
        return _skipped(phase, folder, done)
    t_start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    rest = list(rest or [])
    if phase.self_labels is not None:
        if init_weights is None:
            raise ConfigError(f"{label}: self-labelling needs the weights of a phase before")
        assert fold_data.source is not None
        keras.backend.clear_session()
        fold_data = replace(
            fold_data,
            self_labelled=self_label(
                lambda: build_model(spec, recipe.bn_momentum, resolve_precision(recipe.precision)),
                spec,
                init_weights,
                fold_data.source,
                phase.self_labels,
                folder / "self_labels",
                seed,
                label,
            ),
        )
    tiles = _phase_tiles(phase, fold_data)
    n_tiles = [len(tiles), *(_planned_tiles(p, fold_data) for p in rest)]

    state = ResumeState(folder / "resume", {}).load()
    if state is not None and "plan" in state:
        phase = PhaseConfig.model_validate(state["plan"])  # the plan the run started with
    elif budget is not None:
        started = int(state["epoch"]) if state is not None else 0
        phase = budget.plan([phase, *rest], n_tiles, started=started)[0]

    keras.utils.set_random_seed(seed)
    keras.backend.clear_session()
    model = build_model(spec, recipe.bn_momentum, resolve_precision(recipe.precision))
    compile_model(model, phase)
    adapter = get_adapter(spec.adapter)
    outputs = list(model.output_names)

    # the plan is final (and saved with the resume state) once a speed is known
    plan = {
        "phase": phase,
        "validate": set(validated_epochs(phase)),
        "final": budget is None or budget.measured,
    }

    def validate_now(epoch: int) -> bool:
        first = budget is not None and budget.val_s is None  # measure its duration
        return epoch in plan["validate"] or first

    log_cb = EpochLog(folder / "log.jsonl", prefix=f"{label} ")
    best_cb = BestCheckpoint(folder / "best.weights.h5")
    stateful: dict[str, keras.callbacks.Callback] = {"best": best_cb}
    validation = ValidationScore(
        fold_data.val,
        adapter,
        spec.main_output if len(outputs) > 1 else None,
        logits=True,
        batch_size=max(phase.batch_size, 16),
        black=fold_data.val_black,
        when=validate_now,
    )
    timer = StepTimer()
    callbacks: list[keras.callbacks.Callback] = [timer, validation]
    cosine_cb = None
    if phase.schedule == "cosine":
        assert phase.cosine is not None
        cosine_cb = CosineSchedule(
            phase.cosine.cycle_epochs,
            phase.cosine.lr_max,
            phase.cosine.lr_min,
            folder,
            steps_per_epoch=len(tiles) // min(phase.batch_size, len(tiles))
            if phase.cosine.per_step
            else None,
        )
        callbacks.append(cosine_cb)
    if phase.schedule == "plateau":
        assert phase.plateau is not None
        plateau = keras.callbacks.ReduceLROnPlateau(
            monitor="val_score",
            mode="max",
            factor=phase.plateau.factor,
            patience=phase.plateau.patience,
            min_lr=phase.plateau.min_lr,
            verbose=0,
        )
        callbacks.append(plateau)
        stateful["plateau"] = plateau
    if phase.early_stopping:
        early = keras.callbacks.EarlyStopping(
            monitor="val_score", mode="max", patience=phase.early_stopping, verbose=0
        )
        callbacks.append(early)
        stateful["early"] = early
    callbacks += [best_cb, log_cb]
    if budget is not None:

        def next_epoch_seconds() -> float:
            p = plan["phase"]
            return budget.epoch_seconds(p, len(tiles)) + float(budget.val_s or 0) / (
                p.validate_every
            )

        def shorten(epoch: int, fit: int) -> int | None:
            """Behind the plan in the chain's last phase: end it after ``fit`` more
            epochs, the running cosine cycle cut to end there (0-based last epoch)."""
            p = plan["phase"]
            end = epoch + 1 + fit
            if not plan["final"] or rest or p.cosine is None or cosine_cb is None:
                return None
            if end >= p.total_epochs:
                return None
            cycles = truncate_cycles(p.cosine.cycle_epochs, end)
            p = p.model_copy(
                update={"cosine": p.cosine.model_copy(update={"cycle_epochs": cycles})}
            )
            plan.update(phase=p, validate=set(validated_epochs(p)))
            cosine_cb.set_cycles(cycles)
            print(f"{label}: behind the budget plan, ending after epoch {end}: {_plan_text(p)}")
            return end - 1

        callbacks.append(
            BudgetGuard(
                budget,
                timer,
                validation,
                phase.batch_size,
                next_epoch_seconds,
                shorten,
                steps=len(tiles) // min(phase.batch_size, len(tiles)),
            )
        )

    def extra_state() -> dict[str, Any]:
        out: dict[str, Any] = {}
        if plan["final"]:
            out["plan"] = plan["phase"].model_dump()
        if budget is not None:
            out["budget_spent_s"] = round(budget.spent(), 2)
        return out

    resume = ResumeState(folder / "resume", stateful, extra=extra_state)
    callbacks.append(resume)

    start_epoch = 0
    epochs = phase.total_epochs
    if state is not None:
        resume.restore_model(model, state)
        resume.restored = state
        start_epoch = int(state["epoch"])
        log_cb.records = _read_log(folder / "log.jsonl", start_epoch)
        print(f"{label}: resuming after epoch {start_epoch}/{epochs}")
        if state.get("stop_training"):
            start_epoch = epochs  # early stopping (or the budget) had ended the phase
    elif init_weights is not None:
        load_model_weights(model, init_weights)
    else:
        sample = tiles.images[np.random.default_rng(seed).permutation(len(tiles))[:256]]
        calibrate_input_batchnorm(model, adapter.forward_images(sample))

    def fit(first: int, last: int) -> None:
        batches = TrainBatches(
            tiles,
            adapter,
            phase.batch_size,
            phase.augmentation,
            epochs=last,
            start_epoch=first,
            seed=seed,
            outputs=outputs,
        )
        print(
            f"{label}: {len(tiles)} train tiles ({batches.steps_per_epoch} steps of "
            f"{batches.batch_size}), {len(fold_data.val)} validation tiles, epochs "
            f"{first + 1}..{last}",
            flush=True,
        )
        model.fit(
            batches,
            epochs=last,
            initial_epoch=first,
            steps_per_epoch=batches.steps_per_epoch,
            callbacks=callbacks,
            shuffle=False,
            verbose=verbose,
        )

    t0 = time.perf_counter()
    ran = start_epoch
    if start_epoch < epochs and budget is not None and not budget.measured:
        # one epoch measures this machine's speed (its learning rate does not depend on
        # the plan), then the phase and the rest of the chain are fitted to the budget
        fit(0, 1)
        start_epoch = 1
        if not model.stop_training and budget.measured:
            phase = budget.plan([phase, *rest], n_tiles, started=1)[0]
            plan.update(phase=phase, validate=set(validated_epochs(phase)), final=True)
            if cosine_cb is not None and phase.cosine is not None:
                cosine_cb.set_cycles(phase.cosine.cycle_epochs)
            epochs = phase.total_epochs
            print(f"{label}: budget plan: {_plan_text(phase)}", flush=True)
    if start_epoch < epochs and not model.stop_training:
        fit(start_epoch, epochs)
    phase = plan["phase"]  # as planned, and shortened if the budget cut it
    ran = len(log_cb.records) - ran
    seconds = time.perf_counter() - t0
    stopped_in = len(log_cb.records) - 1
    if cosine_cb is not None and budget is not None and 0 <= stopped_in < epochs - 1:
        # the budget ended the phase inside a cycle: keep its weights as that snapshot
        cycle = cosine_cb.position(stopped_in)[0]
        if not (folder / f"snapshot_{cycle}.weights.h5").is_file():
            save_weights(model, folder / f"snapshot_{cycle}.weights.h5")
    save_weights(model, folder / "last.weights.h5")
    if not (folder / "best.weights.h5").is_file():
        save_weights(model, folder / "best.weights.h5")
    records = _read_log(folder / "log.jsonl", None)
    summary = {
        "phase": phase.name,
        "best_score": best_cb.best if best_cb.best_epoch >= 0 else float("nan"),
        "best_epoch": best_cb.best_epoch + 1,
        "epochs": len(records),
        "seconds_this_run": round(seconds, 1),
    }
    if phase.cosine is not None:
        summary["cycle_epochs"] = list(phase.cosine.cycle_epochs)
    atomic_write_text(folder / "DONE.json", json.dumps(summary, indent=1))
    shutil.rmtree(folder / "resume", ignore_errors=True)
    if budget is not None:
        if ran > 0 and budget.measured:  # what a phase costs besides its epochs
            n_val = sum(1 for r in records[-ran:] if "val_score" in r)
            work = budget.epoch_seconds(phase, len(tiles)) * ran + n_val * float(budget.val_s or 0)
            budget.overhead_s = float(np.clip(time.perf_counter() - t_start - work, 5.0, 120.0))
        budget.save()
    best, at = summary["best_score"], summary["best_epoch"]
    print(f"{label}: done, best val_score {best:.4f} at epoch {at}")
    return PhaseResult(
        phase.name,
        folder,
        float(summary["best_score"]),
        int(summary["best_epoch"]),
        int(summary["epochs"]),
        seconds,
        False,
    )


def _plan_text(phase: PhaseConfig) -> str:
    if phase.cosine is not None:
        return f"{phase.total_epochs} epochs, cosine cycles {phase.cosine.cycle_epochs}"
    return f"{phase.total_epochs} epochs"


def _skipped(phase: PhaseConfig, folder: Path, done: dict[str, Any]) -> PhaseResult:
    return PhaseResult(
        phase.name, folder, done["best_score"], done["best_epoch"], done["epochs"], 0.0, True
    )


def _read_log(path: Path, upto: int | None) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if upto is None or r["epoch"] <= upto]


# --------------------------------------------------------------------------- stages


def weights_root(settings: Settings, family: str) -> Path:
    return settings.bes_weights_dir if family == "bes" else settings.phalanx_weights_dir


def stage_dir(settings: Settings, recipe: StageRecipe) -> Path:
    return weights_root(settings, recipe.family) / recipe.stage


def _init_for(phase: PhaseConfig, previous: Path | None, pretrain_last: Path | None) -> Path | None:
    if phase.init == "scratch":
        return None
    if phase.init == "pretrain":
        return pretrain_last
    if previous is None:
        raise ConfigError(f"phase {phase.name!r} has no previous phase to start from")
    return previous / ("best.weights.h5" if phase.init == "previous_best" else "last.weights.h5")


def _write_config(folder: Path, recipe: StageRecipe, settings: Settings, profile: str) -> None:
    resolved = {
        "profile": profile,
        "settings": settings.resolved(),
        "recipe": recipe.model_dump(),
        "precision": resolve_precision(recipe.precision),
        "python": sys.version.split()[0],
        "keras": keras.__version__,
    }
    atomic_write_text(folder / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))


def _run_chain(
    phases: list[PhaseConfig],
    spec: ModelSpec,
    recipe: StageRecipe,
    settings: Settings,
    profile: str,
    folder: Path,
    fold: int | None,
    pretrain_last: Path | None,
    seed: int,
    label: str,
    verbose: int,
    budget_minutes: float | None = None,
) -> list[PhaseResult]:
    """Phases one after another in ``folder`` (fold ``None``: the pretrain chain), within
    ``budget_minutes`` of wall-clock time when given."""
    tag = f"[{recipe.family}/{recipe.stage} {label}"
    dones = [_done(folder / p.name) for p in phases]
    if all(d is not None for d in dones):
        print(f"{tag}]: complete, skipped")
        return [_skipped(p, folder / p.name, d) for p, d in zip(phases, dones, strict=True)]
    folder.mkdir(parents=True, exist_ok=True)
    budget = Budget(60.0 * budget_minutes, folder / "budget.json") if budget_minutes else None
    _write_config(folder, recipe, settings, profile)
    needs_pseudo = any(p.data in ("pseudo", "folds+pseudo") for p in phases)
    fold_data = prepare_fold(recipe, settings, fold, need_pseudo=needs_pseudo)
    previous: Path | None = None
    chain = []
    for i, phase in enumerate(phases):
        res = run_phase(
            phase,
            spec,
            recipe,
            fold_data,
            folder / phase.name,
            _init_for(phase, previous, pretrain_last),
            seed=seed + i,
            label=f"{tag} {phase.name}]",
            verbose=verbose,
            budget=budget,
            rest=phases[i + 1 :],
        )
        chain.append(res)
        previous = res.folder
    return chain


def train_stage(
    recipe: StageRecipe,
    settings: Settings,
    folds: list[int] | None = None,
    profile: str = "full",
    verbose: int = 2,
    budget_minutes: float | None = None,
) -> dict[str, list[PhaseResult]]:
    """Run the recipe: its pretrain phases once, then its phases for each fold.

    ``budget_minutes`` (default: the recipe's; 0: none) bounds each chain's wall-clock time
    (the pretrain chain and every fold's), see the module docstring."""
    if budget_minutes is None:
        budget_minutes = recipe.budget_minutes
    spec = get_model_spec(recipe.model)
    out = stage_dir(settings, recipe)
    results: dict[str, list[PhaseResult]] = {}
    folds = recipe.folds if folds is None else folds
    bad = [k for k in folds if not 0 <= k < recipe.n_folds]
    if bad:
        raise ConfigError(f"fold(s) {bad} outside 0..{recipe.n_folds - 1}")

    pretrain_last: Path | None = None
    if recipe.pretrain:
        chain = _run_chain(
            recipe.pretrain,
            spec,
            recipe,
            settings,
            profile,
            out / "pretrain",
            None,
            None,
            seed=recipe.seed * 1000 + 900,
            label="pretrain",
            verbose=verbose,
            budget_minutes=budget_minutes,
        )
        results["pretrain"] = chain
        pretrain_last = chain[-1].folder / "last.weights.h5"
    for k in folds:
        results[f"fold_{k}"] = _run_chain(
            recipe.phases,
            spec,
            recipe,
            settings,
            profile,
            out / f"fold_{k}",
            k,
            pretrain_last,
            seed=recipe.seed * 1000 + k * 10,
            label=f"fold {k}",
            verbose=verbose,
            budget_minutes=budget_minutes,
        )
    return results
