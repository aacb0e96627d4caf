"""Where outputs live: a stage's weights folder, probability files, pseudo-label CSVs."""

from __future__ import annotations

from pathlib import Path

from saltseg.config.recipe import StageRecipe
from saltseg.config.settings import Settings

PSEUDO_CSV = "pseudo_labels.csv"
"""Pseudo-labels of a folder (``id,rle_mask`` and optionally ``fold``): what training reads."""


def stage_dir(settings: Settings, recipe: StageRecipe) -> Path:
    """``<family weights folder>/<stage>``: a stage's trained (or imported) weights; a recipe
    with ``weights_stage`` uses that stage's folder."""
    return settings.weights_dir(recipe.family) / (recipe.weights_stage or recipe.stage)


def probs_path(settings: Settings, which: str, family: str, stage: str) -> Path:
    """Where ``saltseg predict`` writes a stage's probabilities (``which``: test or oof)."""
    return settings.predictions_dir / "probs" / which / f"{family}_{stage}.h5"
