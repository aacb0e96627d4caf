"""Which backend ``--backend auto`` predicts with: the bench's recorded decision.

``bench/predict_backends.py`` measures, per network, every installed backend's tiles/s and
its agreement with float32 Keras on real tiles (:func:`agreement`: at least 99.9% of mask
pixels identical at threshold 0.5 and the competition score within 0.001), then records the
fastest agreeing backend with :func:`record_choice` in the decision file:
``$SALTSEG_BACKEND_CHOICE``, else ``~/.cache/saltseg/backend_choice.json``::

    {"version": 1,
     "networks": {"phalanx-v5-cpu": {
        "backend": "openvino", "batch": 32, "threads": 2,
        "machine": {"cpu": "AMD EPYC", "cores": 2, "gpu": null},
        "tiles": 1000, "measured_at": "2026-12-02T15:40:00Z",
        "measured": {"keras": {"tiles_per_s": 33.1, "agrees": true, "pixels_identical": 1.0,
                               "score_delta": 0.0}, ...}}}}

At prediction ``auto`` reads the network's entry (:func:`resolve_backend`), nothing is
measured again; an entry from another machine (CPU model, core count or GPU differ), a
backend that is not installed, or no entry at all means float32 Keras.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.core import metric
from saltseg.core.atomic import atomic_write_text

CHOICE_ENV = "SALTSEG_BACKEND_CHOICE"
MIN_IDENTICAL = 0.999
MAX_SCORE_DELTA = 0.001


def choice_path() -> Path:
    """The decision file (``$SALTSEG_BACKEND_CHOICE`` or the user's cache folder)."""
    env = os.environ.get(CHOICE_ENV)
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "saltseg" / "backend_choice.json"


def machine() -> dict[str, Any]:
    """What a decision is valid for: the CPU model, the cores, the GPU's capability."""
    from saltseg.config.precision import gpu_capability

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    gpu = gpu_capability()
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": list(gpu) if gpu else None}


@dataclass(frozen=True)
class Agreement:
    """How a backend's masks compare with float32 Keras's on the same tiles."""

    pixels_identical: float
    score_ref: float
    score: float

    @property
    def score_delta(self) -> float:
        return abs(self.score - self.score_ref)

    @property
    def agrees(self) -> bool:
        # within 0.001 inclusive: a score moves in steps of 0.1 / tiles (0.001 on 100 tiles)
        close = self.score_delta <= MAX_SCORE_DELTA + 1e-9
        return self.pixels_identical >= MIN_IDENTICAL and close


def agreement(
    ref: np.ndarray, prob: np.ndarray, truth: np.ndarray, threshold: float = 0.5
) -> Agreement:
    """Masks of probabilities ``prob`` against the reference ``ref`` (both ``(N, 101, 101)``)
    and both scored on the true masks ``truth``."""
    a, b = ref > threshold, prob > threshold
    return Agreement(
        float((a == b).mean()), float(metric.score(truth, a)), float(metric.score(truth, b))
    )


@dataclass(frozen=True)
class Choice:
    """The backend, batch and threads a network predicts with."""

    backend: str
    batch: int | None = None
    threads: int | None = None


def fastest_agreeing(measured: dict[str, dict[str, Any]]) -> str:
    """The backend with the most tiles/s among those that agree (``keras`` if none does)."""
    ok = {b: m["tiles_per_s"] for b, m in measured.items() if b == "keras" or m.get("agrees")}
    return max(ok, key=ok.__getitem__) if ok else "keras"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": 1, "networks": {}}
    if not isinstance(data, dict) or not isinstance(data.get("networks"), dict):
        return {"version": 1, "networks": {}}
    return data


def record_choice(
    network: str,
    measured: dict[str, dict[str, Any]],
    batch: int,
    threads: int | None,
    tiles: int,
    path: Path | None = None,
) -> Choice:
    """Record the fastest agreeing backend of ``network`` (atomically, other entries kept)."""
    path = path or choice_path()
    data = _read(path)
    choice = Choice(fastest_agreeing(measured), batch, threads)
    data["networks"][network] = {
        **asdict(choice),
        "machine": machine(),
        "tiles": tiles,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "measured": measured,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return choice


def read_choice(network: str, path: Path | None = None) -> Choice | None:
    """The recorded choice for ``network`` on this machine, or None."""
    entry = _read(path or choice_path())["networks"].get(network)
    if not isinstance(entry, dict) or entry.get("machine") != machine():
        return None
    try:
        return Choice(str(entry["backend"]), entry.get("batch"), entry.get("threads"))
    except KeyError:
        return None


def resolve_backend(backend: str, network: str, path: Path | None = None) -> Choice:
    """``backend`` as given, or for ``auto`` the recorded choice (float32 Keras without one
    or when its runtime is not installed)."""
    from saltseg.infer.backends import BACKENDS, available

    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (auto, {', '.join(BACKENDS)})")
        return Choice(backend)
    recorded = read_choice(network, path)
    if recorded is None or recorded.backend not in BACKENDS or not available(recorded.backend):
        return Choice("keras")
    return recorded
