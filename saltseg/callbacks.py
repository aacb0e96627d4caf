"""Keras callbacks of the training engine.

Order matters and :func:`saltseg.training.run_phase` builds the list as: validation score
-> learning-rate schedule -> reduce-on-plateau -> early stopping -> best checkpoint ->
epoch log -> resume state. The validation callback writes ``val_score`` into the epoch
logs that the later callbacks read; the resume callback runs last, so a checkpoint always
holds a fully finished epoch.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np

from saltseg import metric
from saltseg.adapters import Adapter
from saltseg.atomic import atomic_path, atomic_write_text
from saltseg.pipeline import TileSet


def save_weights(model: keras.Model, path: Path) -> None:
    """``model.save_weights`` through a temporary file (atomic)."""
    with atomic_path(path) as tmp:
        model.save_weights(tmp)


def load_model_weights(model: keras.Model, path: Path) -> None:
    """Load a ``.weights.h5`` file's model weights, leaving the (fresh) optimizer alone."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)


def predict_probabilities(
    model: keras.Model,
    images: np.ndarray,
    adapter: Adapter,
    output: str | None,
    logits: bool,
    batch_size: int = 32,
    chunk: int = 256,
    flip_tta: bool = False,
) -> np.ndarray:
    """Probabilities at 101x101 for uint8 tiles ``(N, 101, 101)``, streamed in chunks."""
    out = np.empty(images.shape, dtype=np.float32)
    for lo in range(0, len(images), chunk):
        x = adapter.forward_images(images[lo : lo + chunk])
        prob = _forward(model, x, output, logits, batch_size)
        if flip_tta:
            flipped = _forward(model, x[:, :, ::-1], output, logits, batch_size)[:, :, ::-1]
            prob = 0.5 * (prob + flipped)
        out[lo : lo + chunk] = adapter.inverse(prob)
    return out


def _forward(model: keras.Model, x: np.ndarray, output: str | None, logits: bool, bs: int):
    pred = model.predict(np.ascontiguousarray(x), batch_size=bs, verbose=0)
    if isinstance(pred, dict):
        pred = pred[output] if output else next(iter(pred.values()))
    elif isinstance(pred, list | tuple):
        names = list(model.output_names)
        pred = pred[names.index(output)] if output in names else pred[0]
    pred = np.asarray(pred, dtype=np.float32)
    if logits:
        pred = 1.0 / (1.0 + np.exp(-np.clip(pred, -60, 60)))
    return pred


class ValidationScore(keras.callbacks.Callback):
    """Adds ``val_score`` (competition metric at 101x101, threshold 0.5) to the epoch logs."""

    def __init__(
        self,
        val: TileSet,
        adapter: Adapter,
        output: str | None,
        logits: bool,
        batch_size: int,
        black: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.val = val
        self.adapter = adapter
        self.output = output
        self.logits = logits
        self.batch_size = batch_size
        self.black = black if black is not None else np.zeros(len(val), dtype=bool)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        prob = predict_probabilities(
            self.model, self.val.images, self.adapter, self.output, self.logits, self.batch_size
        )
        pred = prob > 0.5
        pred[self.black] = False
        logs["val_score"] = metric.score(self.val.masks, pred)


class CosineSchedule(keras.callbacks.Callback):
    """Cosine annealing per epoch within each cycle (``lr_max`` -> ``lr_min``).

    At the start of every cycle after the first, the optimizer's slot variables (momenta,
    running averages) are reset, as each original cycle started a fresh optimizer. At the
    end of each cycle the weights are saved as ``snapshot_<c>.weights.h5``.
    """

    def __init__(
        self, cycle_epochs: list[int], lr_max: float, lr_min: float, out_dir: Path
    ) -> None:
        super().__init__()
        self.cycle_epochs = list(cycle_epochs)
        self.lr_max = lr_max
        self.lr_min = lr_min
        self.out_dir = out_dir
        self.bounds = np.cumsum([0, *self.cycle_epochs])

    def position(self, epoch: int) -> tuple[int, int, int]:
        """(cycle, epoch within cycle, cycle length)."""
        c = int(np.searchsorted(self.bounds, epoch, side="right") - 1)
        c = min(c, len(self.cycle_epochs) - 1)
        return c, epoch - int(self.bounds[c]), self.cycle_epochs[c]

    def lr_at(self, epoch: int) -> float:
        _, t, length = self.position(epoch)
        return self.lr_min + (self.lr_max - self.lr_min) * (1 + math.cos(math.pi * t / length)) / 2

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        c, t, _ = self.position(epoch)
        if t == 0 and c > 0:
            reset_optimizer_slots(self.model.optimizer)
        self.model.optimizer.learning_rate = self.lr_at(epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        c, t, length = self.position(epoch)
        if t == length - 1:
            save_weights(self.model, self.out_dir / f"snapshot_{c}.weights.h5")


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

    def __init__(self, folder: Path, stateful: dict[str, keras.callbacks.Callback]) -> None:
        super().__init__()
        self.folder = folder
        self.stateful = stateful
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
