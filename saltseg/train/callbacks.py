"""Keras callbacks of the training engine.

Order matters and :func:`saltseg.train.training.run_phase` builds the list as: validation score
-> learning-rate schedule -> reduce-on-plateau -> early stopping -> best checkpoint ->
epoch log -> resume state. The validation callback writes ``val_score`` into the epoch
logs that the later callbacks read; the resume callback runs last, so a checkpoint always
holds a fully finished epoch.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from saltseg.core import metric
from saltseg.core.atomic import atomic_path, atomic_write_text
from saltseg.data.adapters import Adapter
from saltseg.data.tiles import TileSet
from saltseg.infer.networks import load_model_weights, predict_probabilities, save_weights


class ValidationScore(keras.callbacks.Callback):
    """Adds ``val_score`` (competition metric at 101x101, threshold 0.5) to the epoch logs.

    ``when(epoch)`` (0-based) says whether to validate after that epoch (default: always);
    ``seconds`` is the duration of the last validation pass.
    """

    def __init__(
        self,
        val: TileSet,
        adapter: Adapter,
        output: str | None,
        logits: bool,
        batch_size: int,
        black: np.ndarray | None = None,
        when: Callable[[int], bool] | None = None,
    ) -> None:
        super().__init__()
        self.val = val
        self.adapter = adapter
        self.output = output
        self.logits = logits
        self.batch_size = batch_size
        self.black = black if black is not None else np.zeros(len(val), dtype=bool)
        self.when = when
        self.seconds: float | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None or (self.when is not None and not self.when(epoch)):
            return
        t0 = time.perf_counter()
        prob = predict_probabilities(
            self.model, self.val.images, self.adapter, self.output, self.logits, self.batch_size
        )
        pred = prob > 0.5
        pred[self.black] = False
        logs["val_score"] = metric.score(self.val.masks, pred)
        self.seconds = time.perf_counter() - t0
        logs["val_seconds"] = self.seconds


class StepTimer(keras.callbacks.Callback):
    """Steady-state seconds per training step: the median step of each epoch, which leaves
    out the first step's tracing and the epoch-end work."""

    def __init__(self) -> None:
        super().__init__()
        self.step_seconds: list[float] = []
        self._last = 0.0
        self._epoch: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = []
        self._last = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        self._epoch.append(now - self._last)
        self._last = now

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._epoch:
            steady = self._epoch[1:] if len(self._epoch) > 1 else self._epoch
            self.step_seconds.append(float(np.median(steady)))
            if logs is not None:
                logs["step_seconds"] = self.step_seconds[-1]

    @property
    def median(self) -> float | None:
        """Median steady-state step time over the epochs seen (``None``: none yet)."""
        return float(np.median(self.step_seconds)) if self.step_seconds else None


class CosineSchedule(keras.callbacks.Callback):
    """Cosine annealing per epoch within each cycle (``lr_max`` -> ``lr_min``).

    At the start of every cycle after the first, the optimizer's slot variables (momenta,
    running averages) are reset, as each original cycle started a fresh optimizer. At the
    end of each cycle the weights are saved as ``snapshot_<c>.weights.h5``.

    With ``cycle_best``, each cycle's best-validation weights are kept as
    ``cycle_best_<c>.weights.h5`` (from the ``val_score`` of the epoch logs, so this
    callback runs after the validation), and every cycle after the first starts from the
    previous cycle's best: the original b.e.s. ran each cycle as a separate run that loaded
    the previous run's best-validation file.
    """

    def __init__(
        self,
        cycle_epochs: list[int],
        lr_max: float,
        lr_min: float,
        out_dir: Path,
        steps_per_epoch: int | None = None,
        cycle_best: bool = False,
    ) -> None:
        super().__init__()
        self.cycle_best = cycle_best
        self.cycle_scores: dict[int, float] = {}  # best val_score of each cycle so far
        self.lr_max = lr_max
        self.lr_min = lr_min
        self.out_dir = out_dir
        self.steps_per_epoch = steps_per_epoch  # set: anneal per step down to lr_min
        self.set_cycles(cycle_epochs)
        self._epoch = 0

    def set_cycles(self, cycle_epochs: list[int]) -> None:
        """Replace the cycle lengths (a wall-clock budget re-plans them after epoch 1)."""
        self.cycle_epochs = list(cycle_epochs)
        self.bounds = np.cumsum([0, *self.cycle_epochs])

    def cycle_end(self, epoch: int) -> bool:
        """Whether ``epoch`` (0-based) is the last epoch of a cycle."""
        _, t, length = self.position(epoch)
        return t == length - 1

    def position(self, epoch: int) -> tuple[int, int, int]:
        """(cycle, epoch within cycle, cycle length)."""
        c = int(np.searchsorted(self.bounds, epoch, side="right") - 1)
        c = min(c, len(self.cycle_epochs) - 1)
        return c, epoch - int(self.bounds[c]), self.cycle_epochs[c]

    def lr_at(self, epoch: int, step: int = 0) -> float:
        """The rate of ``epoch`` (per epoch), or of its ``step`` (per step: the cycle's
        last step trains at ``lr_min``)."""
        _, t, length = self.position(epoch)
        if self.steps_per_epoch:
            n = self.steps_per_epoch
            frac = (t * n + step) / max(1, length * n - 1)
        else:
            frac = t / length
        return self.lr_min + (self.lr_max - self.lr_min) * (1 + math.cos(math.pi * frac)) / 2

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        c, t, _ = self.position(epoch)
        if t == 0 and c > 0:
            reset_optimizer_slots(self.model.optimizer)
            previous = self.cycle_best_path(c - 1)
            if self.cycle_best and previous.is_file():
                load_model_weights(self.model, previous)
        self._epoch = epoch
        self.model.optimizer.learning_rate = self.lr_at(epoch)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.steps_per_epoch and batch > 0:
            self.model.optimizer.learning_rate = self.lr_at(self._epoch, batch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        c, t, length = self.position(epoch)
        score = (logs or {}).get("val_score")
        if self.cycle_best and score is not None and score > self.cycle_scores.get(c, -math.inf):
            self.cycle_scores[c] = float(score)
            save_weights(self.model, self.cycle_best_path(c))
        if t == length - 1:
            save_weights(self.model, self.out_dir / f"snapshot_{c}.weights.h5")

    def cycle_best_path(self, cycle: int) -> Path:
        """``cycle_best_<c>.weights.h5`` of the phase folder."""
        return self.out_dir / f"cycle_best_{cycle}.weights.h5"

    def get_state(self) -> dict[str, Any]:
        return {"cycle_scores": {str(c): s for c, s in self.cycle_scores.items()}}

    def set_state(self, state: dict[str, Any]) -> None:
        scores = state.get("cycle_scores", {})
        self.cycle_scores = {int(c): float(s) for c, s in scores.items()}


def reset_optimizer_slots(optimizer: keras.optimizers.Optimizer) -> None:
    """Zero an optimizer's per-variable state (not its iteration count or learning rate)."""
    for v in optimizer.variables:
        name = v.path.rsplit("/", 1)[-1]
        if name in ("iteration", "learning_rate"):
            continue
        v.assign(keras.ops.zeros_like(v))


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps ``best.weights.h5``: the weights with the highest ``val_score`` so far."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.best = -math.inf
        self.best_epoch = -1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        score = (logs or {}).get("val_score")
        if score is not None and score > self.best:
            self.best, self.best_epoch = float(score), epoch
            save_weights(self.model, self.path)

    def get_state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])


class EpochLog(keras.callbacks.Callback):
    """Appends one JSON line per epoch (metrics, learning rate, time) and prints a summary."""

    def __init__(self, path: Path, prefix: str = "") -> None:
        super().__init__()
        self.path = path
        self.prefix = prefix
        self.records: list[dict[str, Any]] = []
        self._t0 = 0.0
        self._lr = float("nan")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._t0 = time.perf_counter()
        self._lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        rec: dict[str, Any] = {"epoch": epoch + 1}
        for k, v in (logs or {}).items():
            if k != "learning_rate":
                rec[k] = float(v)
        rec["lr"] = self._lr  # the rate this epoch trained with
        rec["seconds"] = round(time.perf_counter() - self._t0, 3)
        self.records.append(rec)
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
        shown = "  ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items()
        )
        print(f"{self.prefix}{shown}", flush=True)


class ResumeState(keras.callbacks.Callback):
    """After every epoch: weights + optimizer and the state of the other callbacks.

    Files (``resume/`` of the phase): ``epoch_<n>.keras`` then ``state.json`` naming it,
    both written atomically, older checkpoints deleted after. A run killed at any moment
    resumes from the last epoch whose ``state.json`` was written.
    """

    STATEFUL = ("wait", "best", "cooldown_counter", "stopped_epoch", "best_epoch")

    def __init__(
        self,
        folder: Path,
        stateful: dict[str, keras.callbacks.Callback],
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.folder = folder
        self.stateful = stateful
        self.extra = extra
        self.restored: dict[str, Any] | None = None

    @property
    def state_path(self) -> Path:
        return self.folder / "state.json"

    def load(self) -> dict[str, Any] | None:
        """The saved state, or ``None`` when the phase has not completed an epoch."""
        if not self.state_path.is_file():
            return None
        state = json.loads(self.state_path.read_text())
        if not (self.folder / state["checkpoint"]).is_file():
            return None
        return state

    def restore_model(self, model: keras.Model, state: dict[str, Any]) -> None:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.folder / state["checkpoint"])
        model.optimizer.learning_rate = state["lr"]

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.restored is None:
            return
        for name, cb in self.stateful.items():
            saved = self.restored["callbacks"].get(name, {})
            if hasattr(cb, "set_state"):
                cb.set_state(saved)
                continue
            for attr, value in saved.items():
                setattr(cb, attr, value)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        name = f"epoch_{epoch + 1:04d}.keras"
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / name) as tmp:
            self.model.save(tmp)
        callbacks: dict[str, Any] = {}
        for key, cb in self.stateful.items():
            if hasattr(cb, "get_state"):
                callbacks[key] = cb.get_state()
            else:
                callbacks[key] = {
                    a: _jsonable(getattr(cb, a)) for a in self.STATEFUL if hasattr(cb, a)
                }
        state = {
            "epoch": epoch + 1,
            "checkpoint": name,
            "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "stop_training": bool(self.model.stop_training),
            "callbacks": callbacks,
            **(self.extra() if self.extra is not None else {}),
        }
        atomic_write_text(self.state_path, json.dumps(state, indent=1))
        for old in self.folder.glob("epoch_*.keras"):
            if old.name != name:
                old.unlink(missing_ok=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
