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

import os
import sys
from pathlib import Path

import keras
import yaml

from saltseg.config.layout import stage_dir
from saltseg.config.precision import resolve_precision
from saltseg.config.recipe import PhaseConfig, StageRecipe
from saltseg.config.settings import Settings
from saltseg.core.atomic import atomic_write_text
from saltseg.core.errors import ConfigError
from saltseg.core.lock import locked
from saltseg.nets.zoo import ModelSpec, get_model_spec
from saltseg.train.budget import Budget
from saltseg.train.folddata import prepare_fold
from saltseg.train.phase import PhaseResult, phase_done, run_phase, skipped_result


def _init_for(phase: PhaseConfig, previous: Path | None, pretrain: Path | None) -> Path | None:
    """The weights a phase starts from (``pretrain``: the pretrain chain's last phase folder)."""
    if phase.init == "scratch":
        return None
    if phase.init in ("pretrain", "pretrain_best"):
        assert pretrain is not None
        return pretrain / (
            "best.weights.h5" if phase.init == "pretrain_best" else "last.weights.h5"
        )
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
    pretrain: Path | None,
    seed: int,
    label: str,
    verbose: int,
    budget_minutes: float | None = None,
) -> list[PhaseResult]:
    """Phases one after another in ``folder`` (fold ``None``: the pretrain chain), within
    ``budget_minutes`` of wall-clock time when given."""
    tag = f"[{recipe.family}/{recipe.stage} {label}"
    dones = [phase_done(folder / p.name) for p in phases]
    if all(d is not None for d in dones):
        print(f"{tag}]: complete, skipped")
        return [skipped_result(p, folder / p.name, d) for p, d in zip(phases, dones, strict=True)]
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
            _init_for(phase, previous, pretrain),
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
    if recipe.imported:
        raise ConfigError(
            f"{recipe.family}/{recipe.stage} holds imported weights (saltseg weights import); "
            "it is not trained here"
        )
    if recipe.encoder_weights:
        path = Path(os.path.expanduser(recipe.encoder_weights))
        path = path if path.is_absolute() else settings.base_dir / path
        if not path.is_file():
            raise ConfigError(f"encoder_weights: {path}: file not found (nothing is downloaded)")
        recipe = recipe.model_copy(update={"encoder_weights": str(path)})
    if budget_minutes is None:
        budget_minutes = recipe.budget_minutes
    if budget_minutes is not None and not 0 <= budget_minutes < float("inf"):
        raise ConfigError(f"budget_minutes must be >= 0 minutes (0: none), got {budget_minutes}")
    spec = get_model_spec(recipe.model)
    out = stage_dir(settings, recipe)
    results: dict[str, list[PhaseResult]] = {}
    folds = recipe.folds if folds is None else folds
    bad = [k for k in folds if not 0 <= k < recipe.n_folds]
    if bad:
        raise ConfigError(f"fold(s) {bad} outside 0..{recipe.n_folds - 1}")

    pretrain: Path | None = None
    if recipe.pretrain:
        with locked(out / "pretrain"):
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
        pretrain = chain[-1].folder
    for k in folds:
        with locked(out / f"fold_{k}"):
            results[f"fold_{k}"] = _run_chain(
                recipe.phases,
                spec,
                recipe,
                settings,
                profile,
                out / f"fold_{k}",
                k,
                pretrain,
                seed=recipe.seed * 1000 + k * 10,
                label=f"fold {k}",
                verbose=verbose,
                budget_minutes=budget_minutes,
            )
    return results
