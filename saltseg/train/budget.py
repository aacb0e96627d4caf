"""A fold chain's wall-clock budget: time spent, measured speeds, and the epochs of each
phase rescaled to fit what is left (see :mod:`saltseg.train.stage`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from saltseg.config.recipe import PhaseConfig
from saltseg.core.atomic import atomic_write_text
from saltseg.train.callbacks import StepTimer, ValidationScore


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
        steps = max(1, n_tiles // min(phase.batch_size, n_tiles)) * phase.epoch_passes
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


def plan_text(phase: PhaseConfig) -> str:
    if phase.cosine is not None:
        return f"{phase.total_epochs} epochs, cosine cycles {phase.cosine.cycle_epochs}"
    return f"{phase.total_epochs} epochs"
