"""Prediction of a trained stage: every fold's weights, flip TTA, the recipe's weighted mean.

For one stage (e.g. b.e.s. stage 2) the recipe's ``predict`` list names the weights of
each fold (``best`` of a phase, or its cosine-cycle snapshots, each with a weight). The
probability of a tile is the mean over folds of each fold's weighted mean over its
weights; every network sees the tile and its horizontal mirror (flip TTA), and its
output goes back to 101x101 through the family's inverse adapter.

Two sets:

- ``test``: every tile of an image folder (ids = sorted file names), streamed in chunks
  into ``PREDICTIONS_DIR/probs/test/<family>_<stage>.h5`` (uint8, see
  :mod:`saltseg.data.probs`); a crash resumes at the last finished chunk, and a complete file
  is reused only when the SHA-256 of its tiles' PNG bytes, of its weights files and the
  settings that change the result (stored in its ``meta``) are unchanged. A lock file
  beside the output stops a second run on the same output.
- ``oof``: each trained fold's validation tiles, predicted by that fold's networks only
  (out-of-fold), into ``probs/oof/<family>_<stage>.h5``, with the validation score.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.config.recipe import PredictWeights, StageRecipe
from saltseg.config.settings import Settings
from saltseg.core import metric
from saltseg.core.digest import file_digest, files_digest
from saltseg.core.errors import ConfigError, DataError
from saltseg.core.lock import locked
from saltseg.data.adapters import get_adapter
from saltseg.data.folds import fold_assignment
from saltseg.data.probs import ProbWriter, read_probs, write_probs
from saltseg.data.tiles import TGSDirectory, ids_from_folder, read_images
from saltseg.infer.backends import Forward, keras_policy, make_forward
from saltseg.infer.choice import resolve_backend
from saltseg.infer.networks import (
    build_model,
    load_model_weights,
    main_output,
    predict_probabilities,
)
from saltseg.infer.prefetch import prefetch
from saltseg.infer.progress import TileCounter, tile_bar
from saltseg.nets.zoo import get_model_spec

DEFAULT_CHUNK = 1024


@dataclass(frozen=True)
class WeightFile:
    """One network's weights and its share of its fold's mean."""

    fold: int
    path: Path
    weight: float

    def signature(self, root: Path) -> list[Any]:
        """Fold, file, share and the SHA-256 of the file's bytes."""
        return [self.fold, str(self.path.relative_to(root)), self.weight, file_digest(self.path)]


def _cycle_index(path: Path) -> int:
    """The cycle of ``snapshot_<c>.weights.h5`` or ``cycle_best_<c>.weights.h5``."""
    return int(path.name.removesuffix(".weights.h5").rpartition("_")[2])


def _entry_files(phase_dir: Path, entry: PredictWeights) -> list[Path]:
    if entry.file in ("best", "last"):
        path = phase_dir / f"{entry.file}.weights.h5"
        return [path] if path.is_file() else []
    prefix = "snapshot" if entry.file == "snapshots" else "cycle_best"
    snaps = sorted(phase_dir.glob(f"{prefix}_*.weights.h5"), key=_cycle_index)
    if entry.snapshots is not None:
        wanted = set(entry.snapshots)
        snaps = [s for s in snaps if _cycle_index(s) in wanted]
    return snaps


def stage_weight_files(recipe: StageRecipe, stage_root: Path) -> dict[int, list[WeightFile]]:
    """The weights that predict, per trained fold of the recipe (an error names what is
    missing: an unfinished phase or no weights file)."""
    entries = recipe.predict or [PredictWeights(phase=recipe.phases[-1].name, file="best")]
    out: dict[int, list[WeightFile]] = {}
    for k in recipe.folds:
        files: list[WeightFile] = []
        for entry in entries:
            if entry.folds is not None and k not in entry.folds:
                continue
            phase_dir = stage_root / f"fold_{k}" / entry.phase
            if not (phase_dir / "DONE.json").is_file():
                raise DataError(
                    f"{phase_dir}: phase not finished; train it first: saltseg train "
                    f"--family {recipe.family} --stage {recipe.stage} --fold {k}"
                )
            paths = _entry_files(phase_dir, entry)
            if not paths:
                raise DataError(f"{phase_dir}: no {entry.file} weights to predict with")
            files += [WeightFile(k, p, entry.weight) for p in paths]
        if not files:
            raise DataError(f"{recipe.family}/{recipe.stage}: no predict entry covers fold {k}")
        out[k] = files
    return out


class StagePredictor:
    """Builds the stage's network once and averages its weight files over tiles.

    ``backend``: where the forward passes run (:mod:`saltseg.infer.backends`; ``auto``: the
    bench's recorded choice for this network, :mod:`saltseg.infer.choice`). ``batch_size``
    None: the recorded choice's batch, else 32.
    """

    def __init__(
        self,
        recipe: StageRecipe,
        files: dict[int, list[WeightFile]],
        batch_size: int | None = None,
        backend: str = "auto",
    ) -> None:
        self.spec = get_model_spec(recipe.model)
        self.choice = resolve_backend(backend, recipe.model)
        self.backend = self.choice.backend
        policy = keras_policy(self.backend)
        self.model = build_model(self.spec, policy=policy, options=recipe.model_options)
        self.adapter = get_adapter(self.spec.adapter)
        self.output = main_output(self.spec, self.model)
        self.files = files
        self.batch_size = batch_size or self.choice.batch or 32
        self._loaded: Path | None = None
        self._forward: Forward | None = None
        self._exports: dict[Path, Forward] = {}

    def describe(self) -> str:
        """The backend, batch and threads, for the log."""
        threads = f", {self.choice.threads} threads" if self.choice.threads else ""
        return f"backend {self.backend}, batch {self.batch_size}{threads}"

    def _load(self, path: Path) -> Forward:
        """The forward function of ``path``'s weights. A Keras one is kept across files (the
        weights change in place, the traced function stays); an export's is kept per file,
        so later chunks neither check nor compile it again."""
        if path in self._exports:
            return self._exports[path]
        if self._loaded == path and self._forward is not None:
            return self._forward
        try:
            load_model_weights(self.model, path)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot load these weights: {exc}") from None
        self._loaded = path
        if self.backend.startswith("keras"):
            if self._forward is None:
                self._forward = make_forward(
                    self.backend, self.model, self.output, path, self.batch_size
                )
            return self._forward
        fwd = make_forward(
            self.backend, self.model, self.output, path, self.batch_size, self.choice.threads
        )
        self._exports[path] = fwd
        return fwd

    def predict(
        self,
        images: np.ndarray,
        folds: list[int],
        flip_tta: bool = True,
        progress: Callable[[float], None] | None = None,
    ) -> np.ndarray:
        """Mean over ``folds`` of each fold's weighted mean probability, ``(N, 101, 101)``.

        ``progress(tiles)`` is called after each network with its share of the tiles.
        """
        acc = np.zeros(images.shape, dtype=np.float32)
        n_nets = sum(len(self.files[k]) for k in folds)
        for k in folds:
            total = sum(w.weight for w in self.files[k])
            for w in self.files[k]:
                prob = predict_probabilities(
                    self._load(w.path),
                    images,
                    self.adapter,
                    None,
                    logits=True,
                    batch_size=self.batch_size,
                    flip_tta=flip_tta,
                )
                acc += prob * np.float32(w.weight / total / len(folds))
                if progress is not None:
                    progress(len(images) / n_nets)
        return acc


def check_sizes(**sizes: int | None) -> None:
    """Every size given (``batch_size``, ``chunk``, ...) is a positive number of tiles
    (``None``: the default, chosen later)."""
    for key, value in sizes.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive number of tiles, got {value!r}")


def tiles_digest(images_dir: Path, ids: list[str]) -> str:
    """SHA-256 over the tiles' ids and PNG bytes (a changed tile changes it)."""
    return files_digest((i, images_dir / f"{i}.png") for i in ids)


def predict_test(
    recipe: StageRecipe,
    stage_root: Path,
    images_dir: Path,
    out: Path,
    profile: str,
    batch_size: int | None = None,
    chunk: int = DEFAULT_CHUNK,
    flip_tta: bool = True,
    backend: str = "auto",
) -> Path:
    """Probabilities of every tile in ``images_dir`` (sorted ids), streamed into ``out``
    (reused when its tiles, weights and settings are unchanged); the next chunk's PNGs are
    read in a thread while this one is predicted."""
    check_sizes(batch_size=batch_size, chunk=chunk)
    files = stage_weight_files(recipe, stage_root)
    ids = ids_from_folder(images_dir)  # ids the RLE CSV cannot hold: refused before any work
    backend = resolve_backend(backend, recipe.model).backend
    with locked(out):
        meta = {
            "family": recipe.family,
            "stage": recipe.stage,
            "model": recipe.model,
            "model_options": dict(recipe.model_options),
            "profile": profile,
            "set": "test",
            "images_dir": str(images_dir.resolve()),
            "tiles_sha256": tiles_digest(images_dir, ids),
            "flip_tta": flip_tta,
            "backend": backend,
            "folds": sorted(files),
            "weights": [w.signature(stage_root) for k in sorted(files) for w in files[k]],
        }
        if _up_to_date(out, meta, ids):
            print(f"[predict {recipe.family}/{recipe.stage}] up to date: {out}")
            return out
        predictor = StagePredictor(recipe, files, batch_size, backend)
        return _predict_into(recipe, predictor, files, images_dir, ids, out, meta, chunk)


def _up_to_date(out: Path, meta: dict[str, Any], ids: list[str]) -> bool:
    """``out`` is a complete, intact prediction of the same tiles, weights and settings."""
    if not out.is_file():
        return False
    try:
        old = read_probs(out)
    except DataError:
        return False
    old.meta.pop("path", None)
    return old.meta == meta and old.ids == ids


def _predict_into(
    recipe: StageRecipe,
    predictor: StagePredictor,
    files: dict[int, list[WeightFile]],
    images_dir: Path,
    ids: list[str],
    out: Path,
    meta: dict[str, Any],
    chunk: int,
) -> Path:
    flip_tta = bool(meta["flip_tta"])
    n_models = sum(len(v) for v in files.values())
    print(
        f"[predict {recipe.family}/{recipe.stage}] {len(ids)} tiles from {images_dir}, "
        f"{n_models} network(s) x {'2 (flip TTA)' if flip_tta else '1'} -> {out}"
    )
    writer = ProbWriter(out, ids, meta)
    print(f"[predict {recipe.family}/{recipe.stage}] {predictor.describe()}")
    t0 = time.perf_counter()
    start = writer.rows_done
    if start:
        print(f"[predict {recipe.family}/{recipe.stage}] resuming at tile {start}")
    starts = range(start, len(ids), chunk)
    chunks = prefetch(
        (lo, read_images([images_dir / f"{i}.png" for i in ids[lo : lo + chunk]])) for lo in starts
    )
    try:
        with tile_bar(len(ids), f"{recipe.family}/{recipe.stage}", start) as bar:
            counter = TileCounter(bar)
            for lo, images in chunks:
                writer.write(lo, predictor.predict(images, sorted(files), flip_tta, counter))
    except BaseException:
        writer.abort()
        raise
    path = writer.close()
    took = time.perf_counter() - t0
    rate = (len(ids) - start) / took if took > 0 else float("inf")
    print(f"[predict {recipe.family}/{recipe.stage}] done in {took:.1f} s ({rate:.1f} tiles/s)")
    return path


@dataclass
class OOFResult:
    path: Path
    score: float
    fold_scores: dict[int, float]
    best_threshold: float
    best_score: float


def predict_oof(
    recipe: StageRecipe,
    stage_root: Path,
    settings: Settings,
    out: Path,
    batch_size: int | None = None,
    flip_tta: bool = True,
    backend: str = "auto",
) -> OOFResult:
    """Out-of-fold probabilities of every trained fold's validation tiles, and their score
    (threshold 0.5, black tiles empty) plus the best threshold on them."""
    check_sizes(batch_size=batch_size)
    files = stage_weight_files(recipe, stage_root)
    data = TGSDirectory(settings.data_dir)
    train = data.load_train(verify_rle=False)
    folds = fold_assignment(recipe, data, train)
    predictor = StagePredictor(recipe, files, batch_size, backend)
    idx_all, probs, fold_scores = [], [], {}
    n_tiles = int(np.isin(folds, sorted(files)).sum())
    bar = tile_bar(n_tiles, f"{recipe.family}/{recipe.stage} oof")
    for k in sorted(files):
        idx = np.flatnonzero(folds == k)
        prob = predictor.predict(train.images[idx], [k], flip_tta, TileCounter(bar))
        pred = (prob > 0.5) & ~train.black[idx, None, None]
        fold_scores[k] = metric.score(train.masks[idx], pred)
        idx_all.append(idx)
        probs.append(prob)
    bar.close()
    idx = np.concatenate(idx_all)
    prob = np.concatenate(probs)
    ids = [train.ids[i] for i in idx]
    black = train.black[idx]
    pred = (prob > 0.5) & ~black[:, None, None]
    score = metric.score(train.masks[idx], pred)
    masked = np.where(black[:, None, None], 0.0, prob)
    thr, best, _ = metric.best_threshold(train.masks[idx], masked)
    meta = {
        "family": recipe.family,
        "stage": recipe.stage,
        "model": recipe.model,
        "set": "oof",
        "flip_tta": flip_tta,
        "folds": sorted(files),
        "score": score,
        "fold_scores": {str(k): v for k, v in fold_scores.items()},
    }
    with locked(out):
        path = write_probs(out, ids, prob, meta)
    return OOFResult(path, score, fold_scores, thr, best)
