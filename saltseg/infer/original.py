"""The original published weights: import them into our layout, and check them on data.

``saltseg weights import ORIGINAL_DIR`` (:func:`import_original`): for every family with a
registered map (registry group ``weight_maps``: ``<family>/weights_map.py``), list the
published files (every fold and stage must be there), read each one
(:mod:`saltseg.data.weights_io`), assign it to our network strictly
(:func:`saltseg.nets.transfer.transfer`) and save it where the family's ``original``
recipe predicts from: ``<weights dir>/original/fold_<k>/<phase>/{best,snapshot_<i>}.weights.h5``
with ``DONE.json`` files, plus ``manifest.json`` (source sha256, family, original stage,
fold, snapshot, weight in the fold's mean, scSE variant, unused source keys). Everything is
written to a staging folder first and moved into place only when every file of every family
converted: nothing is written on failure.

``saltseg weights check`` (:func:`check_original`): each imported fold scored on a sample of
``DATA_DIR``'s train tiles (threshold 0.5, black tiles empty; without TTA), both scSE
variants for phalanx. Published weights score far above an empty prediction on tiles they
were trained on; a wrong map scores like one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saltseg import __version__
from saltseg.config.layout import stage_dir
from saltseg.config.recipe import StageRecipe, load_stage
from saltseg.config.settings import Settings
from saltseg.core import metric
from saltseg.core.atomic import atomic_write_text, swap_in
from saltseg.core.errors import DataError
from saltseg.core.registry import REGISTRY, get_family
from saltseg.infer.exports import sha256_file
from saltseg.nets.transfer import OriginalWeights, TransferReport

MANIFEST = "manifest.json"
FAMILY_BLEND = 0.5
"""Each family's share of the original's final blend (phalanx min-max normalised first)."""


def original_maps(families: list[str] | None = None) -> dict[str, OriginalWeights]:
    """The registered maps of original weights, by family (all, or ``families``)."""
    maps = dict(REGISTRY.items("weight_maps"))
    if families:
        unknown = [f for f in families if f not in maps]
        if unknown:
            raise DataError(f"no original-weights map for {', '.join(unknown)}")
        maps = {f: maps[f] for f in families}
    return maps


@dataclass
class ImportResult:
    family: str
    stage_root: Path
    files: int
    seconds: float
    report: TransferReport


def _stage_family(
    entry: OriginalWeights,
    original: Path,
    recipe: StageRecipe,
    staging: Path,
    variant: str,
    log: Any,
) -> tuple[int, TransferReport]:
    """Convert every file of one family into ``staging``; returns (files, last report)."""
    from saltseg.data.weights_io import read_weights
    from saltseg.infer.networks import build_model, save_weights
    from saltseg.nets.transfer import transfer
    from saltseg.nets.zoo import get_model_spec

    files = entry.files(original)
    model = build_model(get_model_spec(recipe.model), options=recipe.model_options)
    rows = []
    report = TransferReport(entry.family)
    for i, f in enumerate(files, start=1):
        t0 = time.perf_counter()
        report = transfer(model, read_weights(f.path), entry.source_of, entry.convention, f.path)
        out = staging / f"fold_{f.fold}" / f.phase / f"{f.slot}.weights.h5"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_weights(model, out)
        rows.append(
            {
                "source": str(f.path.relative_to(original)),
                "sha256": sha256_file(f.path),
                "family": entry.family,
                "original_stage": f.label,
                "fold": f.fold,
                "phase": f.phase,
                "file": str(out.relative_to(staging)),
                "snapshot": f.slot,
                "weight_in_fold": f.weight,
                "unused_source_keys": len(report.unused),
            }
        )
        took = time.perf_counter() - t0
        log(f"[import {entry.family}] {i}/{len(files)} {f.path.name} ({took:.1f} s)")
    for phase_dir in {staging / f"fold_{f.fold}" / f.phase for f in files}:
        atomic_write_text(phase_dir / "DONE.json", json.dumps({"imported": True}) + "\n")
    manifest = {
        "family": entry.family,
        "recipe": recipe.stage,
        "model": recipe.model,
        "scse": variant,
        "scse_variants": dict(entry.variants),
        "family_blend_weight": FAMILY_BLEND,
        "minmax_normalised": get_family(entry.family).minmax_blend,
        "source_dir": str(original.resolve()),
        "description": entry.description,
        "unused_source_keys_example": report.unused[:20],
        "saltseg_version": __version__,
        "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": rows,
    }
    atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return len(files), report


def import_original(
    original: Path,
    settings: Settings,
    profile: str = "full",
    families: list[str] | None = None,
    variants: dict[str, str] | None = None,
    log: Any = print,
) -> list[ImportResult]:
    """Import the published weights under ``original`` (module docstring). ``variants``:
    the scSE variant per family (default: each map's ``default_variant``)."""
    if not original.is_dir():
        raise DataError(f"{original}: original weights folder not found")
    if not any(p.is_file() for p in original.rglob("*")):
        raise DataError(f"{original}: the folder is empty (unzip the original weights into it)")
    maps = original_maps(families)
    for entry in maps.values():
        entry.files(original)  # every file there before any work
    chosen = {f: (variants or {}).get(f) or e.default_variant for f, e in maps.items()}
    for fam, v in chosen.items():
        if v not in maps[fam].variants:
            raise DataError(f"{fam}: unknown scSE variant {v!r} ({', '.join(maps[fam].variants)})")
    staged: list[tuple[Path, Path, ImportResult]] = []
    try:
        for fam, entry in maps.items():
            recipe = load_stage(fam, entry.recipe, profile)
            final = stage_dir(settings, recipe)
            staging = final.with_name(f".import-{final.name}-{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            t0 = time.perf_counter()
            staged.append((staging, final, ImportResult(fam, final, 0, 0.0, TransferReport(fam))))
            n, report = _stage_family(entry, original, recipe, staging, chosen[fam], log)
            staged[-1] = (
                staging,
                final,
                ImportResult(fam, final, n, time.perf_counter() - t0, report),
            )
    except BaseException:
        for staging, _, _ in staged:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    for staging, final, _ in staged:
        swap_in(staging, final)
    return [r for _, _, r in staged]


def read_manifest(settings: Settings, family: str, profile: str = "full") -> dict[str, Any]:
    """The import manifest of ``family`` (a :class:`DataError` when nothing was imported)."""
    entry = original_maps([family])[family]
    root = stage_dir(settings, load_stage(family, entry.recipe, profile))
    path = root / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no imported weights; run: saltseg weights import ORIGINAL_DIR")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def original_stage(settings: Settings, family: str, profile: str = "full") -> str:
    """The recipe (stage) that predicts with ``family``'s imported weights and the scSE
    variant recorded in its manifest."""
    manifest = read_manifest(settings, family, profile)
    entry = original_maps([family])[family]
    return entry.variants.get(manifest.get("scse", ""), entry.recipe)


def set_variant(settings: Settings, family: str, variant: str, profile: str = "full") -> Path:
    """Record ``variant`` as the scSE variant ``family``'s imported weights predict with."""
    entry = original_maps([family])[family]
    if variant not in entry.variants:
        raise DataError(f"{family}: unknown scSE variant {variant!r}")
    manifest = read_manifest(settings, family, profile)
    manifest["scse"] = variant
    path = stage_dir(settings, load_stage(family, entry.recipe, profile)) / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


@dataclass
class CheckRow:
    family: str
    variant: str
    fold: int
    score: float


def check_original(
    settings: Settings,
    profile: str = "full",
    n_tiles: int = 64,
    seed: int = 0,
    families: list[str] | None = None,
    log: Any = print,
    folds: list[int] | None = None,
) -> tuple[list[CheckRow], float]:
    """Each imported fold's (or only ``folds``') score on ``n_tiles`` sampled train tiles,
    per scSE variant; returns the rows and the score of an all-empty prediction on the same
    tiles."""
    from saltseg.data.tiles import TGSDirectory
    from saltseg.infer.stage import StagePredictor, stage_weight_files

    train = TGSDirectory(settings.data_dir).load_train(verify_rle=False)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(train), size=min(n_tiles, len(train)), replace=False))
    images, masks, black = train.images[idx], train.masks[idx], train.black[idx]
    empty = metric.score(masks, np.zeros_like(masks, dtype=bool))
    rows: list[CheckRow] = []
    for fam, entry in original_maps(families).items():
        read_manifest(settings, fam, profile)
        for variant, stage in entry.variants.items():
            recipe = load_stage(fam, stage, profile)
            files = stage_weight_files(recipe, stage_dir(settings, recipe))
            predictor = StagePredictor(recipe, files)
            for k in sorted(k for k in files if folds is None or k in folds):
                prob = predictor.predict(images, [k], flip_tta=False)
                score = metric.score(masks, (prob > 0.5) & ~black[:, None, None])
                rows.append(CheckRow(fam, variant, k, score))
                log(f"[check {fam} {variant}] fold {k}: {score:.4f} on {len(idx)} train tiles")
    return rows, empty
