"""One training phase: build, compile, fit with its callbacks, resume, and write its outputs.

A phase's folder (``fold_<k>/<phase>/``) holds ``best.weights.h5``, ``last.weights.h5``,
``snapshot_<c>.weights.h5``, ``log.jsonl``, ``resume/`` while it runs and ``DONE.json``
written last; see :mod:`saltseg.train.stage` for the whole layout.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from saltseg.config.precision import resolve_precision
from saltseg.config.recipe import PhaseConfig, StageRecipe
from saltseg.core.atomic import atomic_write_text
from saltseg.core.errors import ConfigError
from saltseg.data.adapters import get_adapter
from saltseg.data.tiles import TileSet
from saltseg.infer.networks import build_model, load_model_weights, main_output, save_weights
from saltseg.nets.losses import get_loss
from saltseg.nets.zoo import ModelSpec
from saltseg.train.batches import TrainBatches
from saltseg.train.budget import Budget, BudgetGuard, plan_text, truncate_cycles, validated_epochs
from saltseg.train.callbacks import (
    BestCheckpoint,
    CosineSchedule,
    EpochLog,
    ResumeState,
    StepTimer,
    ValidationScore,
)
from saltseg.train.folddata import FoldData
from saltseg.train.optim import TorchSGD
from saltseg.train.self_labels import self_label


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
    """The phase's optimizer. ``weight_decay`` is Keras' decoupled form, or with
    ``weight_decay_mode: coupled`` PyTorch SGD's L2 term through momentum
    (:class:`saltseg.train.optim.TorchSGD`, what the original phalanx used)."""
    o = phase.optimizer
    wd = o.weight_decay or None
    if o.name == "sgd" and o.weight_decay_mode == "coupled":
        return TorchSGD(o.lr, momentum=o.momentum, nesterov=o.nesterov, l2=o.weight_decay)
    if o.name == "sgd":
        return keras.optimizers.SGD(o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=wd)
    if o.name == "rmsprop":
        return keras.optimizers.RMSprop(o.lr, momentum=o.momentum, weight_decay=wd)
    return keras.optimizers.Adam(o.lr, weight_decay=wd)


def compile_model(model: keras.Model, phase: PhaseConfig) -> None:
    """Compile with the phase's optimizer and loss: one loss for a single-output network,
    or a loss factory's dict of losses whose keys are the network's outputs."""
    outputs = list(model.output_names)
    loss = get_loss(phase.loss)
    if isinstance(loss, dict) and set(outputs) != set(loss):
        raise ConfigError(
            f"phase {phase.name!r}: loss {phase.loss!r} needs a network with outputs "
            f"{', '.join(sorted(loss))}; this one has {outputs}"
        )
    if not isinstance(loss, dict) and len(outputs) != 1:
        raise ConfigError(
            f"phase {phase.name!r}: loss {phase.loss!r} needs a single-output network; "
            f"this one has {outputs}"
        )
    model.compile(optimizer=make_optimizer(phase), loss=loss, jit_compile=False)


def start_fresh(model: keras.Model, init_weights: Path | None) -> None:
    """Load ``init_weights`` (the network only), then build a fresh optimizer.

    Building the optimizer's variables before the first step saves a second trace of the
    train step (about 6 s a phase, even for the demo's small networks). It is built after
    the weights are loaded: a built optimizer would take the file's optimizer state (the
    previous phase's moments and step count) with them.
    """
    if init_weights is not None:
        load_model_weights(model, init_weights)
    model.optimizer.build(model.trainable_variables)


@dataclass
class PhaseResult:
    """What a phase ended with (``skipped``: it was complete before this run)."""

    name: str
    folder: Path
    best_score: float
    best_epoch: int
    epochs: int
    seconds: float
    skipped: bool


def phase_done(folder: Path) -> dict[str, Any] | None:
    """The phase's ``DONE.json`` (``None`` while it is not complete)."""
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
    done = phase_done(folder)
    if done is not None:
        print(f"{label}: complete, skipped (best val_score {done['best_score']:.4f})")
        return skipped_result(phase, folder, done)
    run = PhaseRun(phase, spec, recipe, fold_data, folder, init_weights, seed, label, budget, rest)
    return run.run(verbose)


class PhaseRun:
    """A phase being trained: its network, callbacks and plan (which a budget may rescale
    after the first epoch, and shorten when the chain falls behind it)."""

    def __init__(
        self,
        phase: PhaseConfig,
        spec: ModelSpec,
        recipe: StageRecipe,
        fold_data: FoldData,
        folder: Path,
        init_weights: Path | None,
        seed: int,
        label: str,
        budget: Budget | None = None,
        rest: list[PhaseConfig] | None = None,
    ) -> None:
        self.t_start = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        self.spec, self.recipe, self.folder = spec, recipe, folder
        self.init_weights, self.seed, self.label = init_weights, seed, label
        self.budget = budget
        self.rest = list(rest or [])
        if phase.self_labels is not None:
            fold_data = self._self_label(phase, fold_data)
        self.fold_data = fold_data
        self.tiles = _phase_tiles(phase, fold_data)
        self.n_tiles = [len(self.tiles), *(_planned_tiles(p, fold_data) for p in self.rest)]
        self.state = ResumeState(folder / "resume", {}).load()
        if self.state is not None and "plan" in self.state:
            phase = PhaseConfig.model_validate(self.state["plan"])  # the plan it started with
        elif budget is not None:
            started = int(self.state["epoch"]) if self.state is not None else 0
            phase = budget.plan([phase, *self.rest], self.n_tiles, started=started)[0]
        # the plan is final (and saved with the resume state) once a speed is known
        self.phase = phase
        self.validate = set(validated_epochs(phase))
        self.final = budget is None or budget.measured
        self.steps = len(self.tiles) // min(phase.batch_size, len(self.tiles)) * phase.epoch_passes

        keras.utils.set_random_seed(seed)
        keras.backend.clear_session()
        self.model = self._build()
        compile_model(self.model, phase)
        self.adapter = get_adapter(spec.adapter)
        self.outputs = list(self.model.output_names)
        self._make_callbacks()

    def _build(self) -> keras.Model:
        precision = resolve_precision(self.recipe.precision)
        options: dict[str, Any] = dict(self.recipe.model_options)
        if self.recipe.encoder_weights and self.init_weights is None:
            options["encoder_weights"] = self.recipe.encoder_weights  # from scratch: ImageNet
        return build_model(self.spec, self.recipe.bn_momentum, precision, options)

    def _self_label(self, phase: PhaseConfig, fold_data: FoldData) -> FoldData:
        """The fold data plus the test tiles this phase labels first (or labelled before)."""
        if self.init_weights is None:
            raise ConfigError(f"{self.label}: self-labelling needs the weights of a phase before")
        assert fold_data.source is not None and phase.self_labels is not None
        keras.backend.clear_session()
        labelled = self_label(
            self._build,
            self.spec,
            self.init_weights,
            fold_data.source,
            phase.self_labels,
            self.folder / "self_labels",
            self.seed,
            self.label,
        )
        return replace(fold_data, self_labelled=labelled)

    # ------------------------------------------------------------------ callbacks

    def _make_callbacks(self) -> None:
        """Validation -> schedule -> plateau -> early stopping -> best -> log -> budget ->
        resume (the order :mod:`saltseg.train.callbacks` relies on)."""
        phase, folder = self.phase, self.folder
        self.log_cb = EpochLog(folder / "log.jsonl", prefix=f"{self.label} ")
        self.best_cb = BestCheckpoint(folder / "best.weights.h5")
        stateful: dict[str, keras.callbacks.Callback] = {"best": self.best_cb}
        self.validation = ValidationScore(
            self.fold_data.val,
            self.adapter,
            main_output(self.spec, self.model),
            logits=True,
            batch_size=max(phase.batch_size, 16),
            black=self.fold_data.val_black,
            when=self._validate_now,
        )
        self.timer = StepTimer()
        callbacks: list[keras.callbacks.Callback] = [self.timer, self.validation]
        self.cosine_cb: CosineSchedule | None = None
        if phase.schedule == "cosine":
            assert phase.cosine is not None
            self.cosine_cb = CosineSchedule(
                phase.cosine.cycle_epochs,
                phase.cosine.lr_max,
                phase.cosine.lr_min,
                folder,
                steps_per_epoch=self.steps if phase.cosine.per_step else None,
                cycle_best=phase.cosine.cycle_best,
            )
            callbacks.append(self.cosine_cb)
            stateful["cosine"] = self.cosine_cb
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
        callbacks += [self.best_cb, self.log_cb]
        if self.budget is not None:
            callbacks.append(
                BudgetGuard(
                    self.budget,
                    self.timer,
                    self.validation,
                    phase.batch_size,
                    self._next_epoch_seconds,
                    self._shorten,
                    steps=self.steps,
                )
            )
        self.resume = ResumeState(folder / "resume", stateful, extra=self._extra_state)
        callbacks.append(self.resume)
        self.callbacks = callbacks

    def _validate_now(self, epoch: int) -> bool:
        first = self.budget is not None and self.budget.val_s is None  # measure its duration
        return epoch in self.validate or first

    def _next_epoch_seconds(self) -> float:
        assert self.budget is not None
        p = self.phase
        return self.budget.epoch_seconds(p, len(self.tiles)) + float(self.budget.val_s or 0) / (
            p.validate_every
        )

    def _replan(self, phase: PhaseConfig) -> None:
        self.phase = phase
        self.validate = set(validated_epochs(phase))

    def _shorten(self, epoch: int, fit: int) -> int | None:
        """Behind the plan in the chain's last phase: end it after ``fit`` more epochs, the
        running cosine cycle cut to end there (returns the 0-based last epoch)."""
        p = self.phase
        end = epoch + 1 + fit
        if not self.final or self.rest or p.cosine is None or self.cosine_cb is None:
            return None
        if end >= p.total_epochs:
            return None
        cycles = truncate_cycles(p.cosine.cycle_epochs, end)
        p = p.model_copy(update={"cosine": p.cosine.model_copy(update={"cycle_epochs": cycles})})
        self._replan(p)
        self.cosine_cb.set_cycles(cycles)
        print(f"{self.label}: behind the budget plan, ending after epoch {end}: {plan_text(p)}")
        return end - 1

    def _extra_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.final:
            out["plan"] = self.phase.model_dump()
        if self.budget is not None:
            out["budget_spent_s"] = round(self.budget.spent(), 2)
        return out

    # ------------------------------------------------------------------ training

    def _start(self) -> int:
        """Restore a resumed run, or initialise the weights; the first epoch to train."""
        state = self.state
        if state is not None:
            self.resume.restore_model(self.model, state)
            self.resume.restored = state
            start = int(state["epoch"])
            self.log_cb.records = _read_log(self.folder / "log.jsonl", start)
            print(f"{self.label}: resuming after epoch {start}/{self.phase.total_epochs}")
            if state.get("stop_training"):
                return self.phase.total_epochs  # early stopping (or the budget) ended it
            return start
        if self.init_weights is None:
            order = np.random.default_rng(self.seed).permutation(len(self.tiles))[:256]
            sample = self.tiles.images[order]
            calibrate_input_batchnorm(self.model, self.adapter.forward_images(sample))
        start_fresh(self.model, self.init_weights)
        return 0

    def _fit(self, first: int, last: int, verbose: int) -> None:
        batches = TrainBatches(
            self.tiles,
            self.adapter,
            self.phase.batch_size,
            self.phase.augmentation,
            epochs=last,
            start_epoch=first,
            seed=self.seed,
            outputs=self.outputs,
            sampling=self.phase.sampling,
            passes=self.phase.epoch_passes,
        )
        print(
            f"{self.label}: {len(self.tiles)} train tiles ({batches.steps_per_epoch} steps of "
            f"{batches.batch_size}), {len(self.fold_data.val)} validation tiles, epochs "
            f"{first + 1}..{last}",
            flush=True,
        )
        self.model.fit(
            batches,
            epochs=last,
            initial_epoch=first,
            steps_per_epoch=batches.steps_per_epoch,
            callbacks=self.callbacks,
            shuffle=False,
            verbose=verbose,
        )

    def run(self, verbose: int = 2) -> PhaseResult:
        """Train the remaining epochs, then write the phase's weights and ``DONE.json``."""
        start = self._start()
        epochs = self.phase.total_epochs
        t0 = time.perf_counter()
        ran = start
        budget = self.budget
        if start < epochs and budget is not None and not budget.measured:
            # one epoch measures this machine's speed (its learning rate does not depend on
            # the plan), then the phase and the rest of the chain are fitted to the budget
            self._fit(0, 1, verbose)
            start = 1
            if not self.model.stop_training and budget.measured:
                phase = budget.plan([self.phase, *self.rest], self.n_tiles, started=1)[0]
                self._replan(phase)
                self.final = True
                if self.cosine_cb is not None and phase.cosine is not None:
                    self.cosine_cb.set_cycles(phase.cosine.cycle_epochs)
                epochs = phase.total_epochs
                print(f"{self.label}: budget plan: {plan_text(phase)}", flush=True)
        if start < epochs and not self.model.stop_training:
            self._fit(start, epochs, verbose)
        ran = len(self.log_cb.records) - ran
        return self._finish(epochs, ran, time.perf_counter() - t0)

    def _finish(self, epochs: int, ran: int, seconds: float) -> PhaseResult:
        phase, folder, budget = self.phase, self.folder, self.budget  # as planned and cut
        stopped_in = len(self.log_cb.records) - 1
        cosine_cb = self.cosine_cb
        if cosine_cb is not None and budget is not None and 0 <= stopped_in < epochs - 1:
            # the budget ended the phase inside a cycle: keep its weights as that snapshot
            cycle = cosine_cb.position(stopped_in)[0]
            if not (folder / f"snapshot_{cycle}.weights.h5").is_file():
                save_weights(self.model, folder / f"snapshot_{cycle}.weights.h5")
        save_weights(self.model, folder / "last.weights.h5")
        if not (folder / "best.weights.h5").is_file():
            save_weights(self.model, folder / "best.weights.h5")
        records = _read_log(folder / "log.jsonl", None)
        best_cb = self.best_cb
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
                work = budget.epoch_seconds(phase, len(self.tiles)) * ran
                work += n_val * float(budget.val_s or 0)
                overhead = time.perf_counter() - self.t_start - work
                budget.overhead_s = float(np.clip(overhead, 5.0, 120.0))
            budget.save()
        best, at = summary["best_score"], summary["best_epoch"]
        print(f"{self.label}: done, best val_score {best:.4f} at epoch {at}")
        return PhaseResult(
            phase.name,
            folder,
            float(summary["best_score"]),
            int(summary["best_epoch"]),
            int(summary["epochs"]),
            seconds,
            False,
        )


def skipped_result(phase: PhaseConfig, folder: Path, done: dict[str, Any]) -> PhaseResult:
    """The result of a complete phase, read from its ``DONE.json``."""
    return PhaseResult(
        phase.name, folder, done["best_score"], done["best_epoch"], done["epochs"], 0.0, True
    )


def _read_log(path: Path, upto: int | None) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if upto is None or r["epoch"] <= upto]
