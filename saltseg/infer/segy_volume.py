"""Salt probability and mask of a whole SEG-Y volume (or 2D line), line by line.

For each direction asked (inline, crossline or both), every line is read, mapped to grey
with one amplitude map fitted on a trace sample of the volume, predicted by overlapping
tiles (:mod:`saltseg.infer.tiling`) and appended to a float32 state file beside the outputs
(``OUT/.segy_partial/``), with a small JSON recording the lines done. Nothing but the
current line is held in memory. A killed run started again with the same input, options
and weights continues after the last finished line.

When every line is done, ``salt_probability.sgy`` (the mean over the directions) and
``salt_mask.sgy`` (probability > threshold, 0/1) are written in file order with the input's
headers (:class:`saltseg.data.segy.SegyWriter`), renamed into place, and the partial state
is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from saltseg import TILE
from saltseg.core.atomic import atomic_path, atomic_write_text
from saltseg.core.errors import ConfigError
from saltseg.data.segy import (
    AmplitudeMap,
    Direction,
    Geometry,
    SegyReader,
    SegyWriter,
    file_order_blocks,
    fit_amplitude_map,
)
from saltseg.infer.progress import tile_bar
from saltseg.infer.tiling import Section, TilePredictor, run_tiles

PROB_NAME = "salt_probability.sgy"
MASK_NAME = "salt_mask.sgy"
AMPLITUDE_JSON = "amplitude_mapping.json"
RUN_JSON = "segy_predict.json"
PARTIAL = ".segy_partial"


@dataclass(frozen=True)
class VolumeOptions:
    """How a volume is predicted (everything but ``threshold``, ``batch`` and ``mmap`` must
    match for a run to resume)."""

    directions: tuple[Direction, ...] = ("inline",)
    stride: int = TILE // 2
    scale: tuple[float, float] = (1.0, 1.0)
    percentiles: tuple[float, float] = (0.5, 99.5)
    clip_mode: Literal["symmetric", "range"] = "symmetric"
    sample_traces: int = 2000
    threshold: float = 0.5
    batch: int = 256
    mmap: bool = True

    def resume_key(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("threshold", "batch", "mmap"):
            out.pop(k)
        return json.loads(json.dumps(out))


@dataclass
class VolumeResult:
    """Where the outputs went, the amplitude map, and where the time went."""

    out_dir: Path
    probability: Path
    mask: Path
    amplitude: AmplitudeMap
    lines: int
    resumed_lines: int
    seconds: dict[str, float] = field(default_factory=dict)


class LineStore:
    """A float32 array ``(lines, traces, samples)`` on disk, written and read with
    ``pwrite``/``pread`` (no memory map, so nothing of it stays resident)."""

    def __init__(self, path: Path, shape: tuple[int, int, int]) -> None:
        self.shape = shape
        self.line_bytes = shape[1] * shape[2] * 4
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(self._fd, shape[0] * self.line_bytes)

    def write_line(self, k: int, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype=np.float32).tobytes()
        os.pwrite(self._fd, data, k * self.line_bytes)

    def read_line(self, k: int) -> np.ndarray:
        buf = os.pread(self._fd, self.line_bytes, k * self.line_bytes)
        return np.frombuffer(buf, dtype=np.float32).reshape(self.shape[1:]).copy()

    def read_across(self, j: int) -> np.ndarray:
        """Position ``j`` of every line: ``(lines, samples)``."""
        n, _, ns = self.shape
        out = np.empty((n, ns), dtype=np.float32)
        for k in range(n):
            buf = os.pread(self._fd, ns * 4, k * self.line_bytes + j * ns * 4)
            out[k] = np.frombuffer(buf, dtype=np.float32)
        return out

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


class _Partial:
    """The state beside the outputs: configuration, amplitude map, lines done."""

    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        self.folder = folder
        self.path = folder / "state.json"
        state = self._load()
        if state is None or state.get("config") != config:
            shutil.rmtree(folder, ignore_errors=True)
            state = {"config": config, "amplitude": None, "done": {}}
        folder.mkdir(parents=True, exist_ok=True)
        self.state = state

    def _load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def done(self, direction: str) -> int:
        return int(self.state["done"].get(direction, 0))

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.state, indent=1))


def _amplitude(partial: _Partial, reader: SegyReader, options: VolumeOptions) -> AmplitudeMap:
    saved = partial.state.get("amplitude")
    if saved:
        return AmplitudeMap(
            tuple(saved["percentiles"]),
            saved["lo"],
            saved["hi"],
            saved["mode"],
            saved["n_traces"],
            saved["n_dead"],
        )
    amap = fit_amplitude_map(reader, options.percentiles, options.clip_mode, options.sample_traces)
    partial.state["amplitude"] = asdict(amap)
    partial.save()
    return amap


def check_directions(geometry: Geometry, directions: tuple[Direction, ...]) -> None:
    """A 2D line has only inlines; a direction is asked once."""
    if len(set(directions)) != len(directions) or not directions:
        raise ConfigError(f"directions must be distinct and not empty, got {directions}")
    if geometry.kind == "2d" and directions != ("inline",):
        raise ConfigError(f"{geometry.path}: a 2D line has one direction; use --direction inline")


def predict_volume(
    geometry: Geometry,
    predictor: TilePredictor,
    out_dir: Path,
    options: VolumeOptions,
    model: dict[str, Any] | None = None,
    progress: bool = True,
) -> VolumeResult:
    """Predict every line, resuming from ``OUT/.segy_partial``, and write the outputs.

    Lines are predicted in groups of about ``options.batch`` tiles (one predictor call per
    group: a network call has a fixed cost) and recorded as done group by group. ``model``
    identifies the predictor (weights and their dates) for resuming: a run with another
    model starts afresh.
    """
    check_directions(geometry, options.directions)
    batch = max(1, options.batch)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"input": geometry.signature(), "options": options.resume_key(), "model": model}
    partial = _Partial(out_dir / PARTIAL, json.loads(json.dumps(config)))
    n_il, n_xl, ns = geometry.shape
    secs = {"read": 0.0, "predict": 0.0, "write": 0.0}
    stores: dict[Direction, LineStore] = {}
    resumed = sum(partial.done(d) for d in options.directions)
    total = sum(geometry.n_lines(d) for d in options.directions)
    with contextlib.ExitStack() as stack, SegyReader(geometry, options.mmap) as reader:
        amap = _amplitude(partial, reader, options)
        bar = stack.enter_context(tile_bar(total, "segy", resumed, "line")) if progress else None
        n_tiles = 0
        for d in options.directions:
            n_lines = geometry.n_lines(d)
            per = n_xl if d == "inline" else n_il
            store = stores[d] = LineStore(partial.folder / f"{d}.f32", (n_lines, per, ns))
            stack.callback(store.close)
            k = partial.done(d)
            while k < n_lines:
                t0 = time.perf_counter()
                group: list[Section] = []
                while k + len(group) < n_lines and sum(len(g.tiles) for g in group) < batch:
                    grey = amap.to_grey(reader.line(d, k + len(group))).T  # rows = samples
                    group.append(Section.cut(grey, options.stride, options.scale))
                t1 = time.perf_counter()
                probs = run_tiles(predictor, np.concatenate([g.tiles for g in group]), batch)
                lines, lo = [], 0
                for g in group:
                    lines.append(g.stitch(probs[lo : lo + len(g.tiles)]))
                    lo += len(g.tiles)
                t2 = time.perf_counter()
                for prob in lines:
                    store.write_line(k, prob.T)
                    k += 1
                store.sync()
                partial.state["done"][d] = k
                partial.save()
                secs["read"] += t1 - t0
                secs["predict"] += t2 - t1
                secs["write"] += time.perf_counter() - t2
                n_tiles += len(probs)
                if bar is not None:
                    bar.set_postfix_str(
                        f"{n_tiles / max(secs['predict'], 1e-9):.1f} tiles/s", refresh=False
                    )
                    bar.update(len(group))
        t0 = time.perf_counter()
        prob_path, mask_path = out_dir / PROB_NAME, out_dir / MASK_NAME
        _write_outputs(geometry, reader, stores, options.threshold, prob_path, mask_path)
        secs["write"] += time.perf_counter() - t0
    run = {
        "input": config["input"],
        "options": asdict(options),
        "model": model,
        "outputs": [PROB_NAME, MASK_NAME],
        "seconds": secs,
    }
    atomic_write_text(out_dir / AMPLITUDE_JSON, json.dumps(amap.to_json(), indent=2) + "\n")
    atomic_write_text(out_dir / RUN_JSON, json.dumps(run, indent=2, default=str) + "\n")
    shutil.rmtree(partial.folder, ignore_errors=True)
    return VolumeResult(out_dir, prob_path, mask_path, amap, total, resumed, secs)


def _write_outputs(
    geometry: Geometry,
    reader: SegyReader,
    stores: dict[Direction, LineStore],
    threshold: float,
    prob_path: Path,
    mask_path: Path,
) -> None:
    """Both SEG-Y outputs, in file order, each renamed into place only when complete."""
    with atomic_path(prob_path) as tmp_p, atomic_path(mask_path) as tmp_m:
        writers = [SegyWriter(tmp_p, reader), SegyWriter(tmp_m, reader)]
        try:
            for direction, k, first in file_order_blocks(geometry):
                prob = np.zeros((geometry.n_lines(_other(direction)), geometry.shape[2]), "f4")
                for d, store in stores.items():
                    prob += store.read_line(k) if d == direction else store.read_across(k)
                prob /= np.float32(len(stores))
                headers = reader.raw_headers(first, first + len(prob))
                writers[0].write(first, headers, prob)
                writers[1].write(first, headers, (prob > threshold).astype(np.float32))
        finally:
            for w in writers:
                w.close()


def _other(direction: Direction) -> Direction:
    return "crossline" if direction == "inline" else "inline"
