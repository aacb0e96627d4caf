"""Helpers shared by the command-line modules: settings, data folder, stage options."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from saltseg.config.recipe import StageRecipe, resolve_recipe
from saltseg.config.settings import PROFILES, Settings, data_dir_for, load_settings
from saltseg.core.registry import family_names


def _number(kind: type, text: str, low: float, low_ok: bool, high: float | None = None) -> Any:
    """``text`` as ``kind`` within ``[low or (low, high]``; else an argparse error."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a{'n integer' if kind is int else ' number'}"
        ) from None
    if not math.isfinite(value) or value < low or (value == low and not low_ok):
        bound = f">= {low:g}" if low_ok else f"> {low:g}"
        raise argparse.ArgumentTypeError(f"{text!r}: must be {bound}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"{text!r}: must be <= {high:g}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (sizes, counts)."""
    return _number(int, text, 1, True)


def nonneg_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return _number(int, text, 0, True)


def nonneg_float(text: str) -> float:
    """An argparse type: a finite number >= 0 (budgets in minutes, blend weights)."""
    return _number(float, text, 0.0, True)


def unit_float(text: str) -> float:
    """An argparse type: a number in [0, 1] (thresholds)."""
    return _number(float, text, 0.0, True, 1.0)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings of ``--settings`` (default ``$SALTSEG_SETTINGS`` or ``SETTINGS.json``)."""
    return load_settings(args.settings)


def data_dir(args: argparse.Namespace) -> Path:
    """``--data``, else the settings' ``DATA_DIR``."""
    return data_dir_for(getattr(args, "data", None), args.settings)


def add_stage_args(
    p: argparse.ArgumentParser, stage_help: str = "recipe name, e.g. stage2"
) -> None:
    """``--family``, ``--stage``, ``--recipe`` and ``--profile``: which recipe a command runs."""
    p.add_argument("--family", choices=family_names())
    p.add_argument("--stage", help=stage_help)
    p.add_argument("--recipe", help="a recipe YAML file instead of --family/--stage")
    p.add_argument("--profile", choices=PROFILES, help="default: PROFILE setting")


def add_backend_args(p: argparse.ArgumentParser, *batch_flags: str) -> None:
    """``--backend`` (where the forward passes run) and the network's batch size."""
    p.add_argument(
        "--backend",
        choices=["auto", "keras", "keras-bf16", "openvino", "onnxruntime"],
        default="auto",
        help="auto: the fastest backend the bench found to agree with float32 Keras "
        "(bench/predict_backends.py; float32 Keras when none was measured here)",
    )
    p.add_argument(
        *(batch_flags or ("--network-batch",)),
        dest="network_batch",
        type=positive_int,
        help="tiles per forward pass (default: the bench's choice for the network, else 32)",
    )


def recipe_from_args(args: argparse.Namespace, settings: Settings) -> tuple[StageRecipe, str]:
    """The recipe the stage options name, with the profile (``--profile`` or the setting)."""
    profile = args.profile or settings.PROFILE
    return resolve_recipe(args.recipe, args.family, args.stage, profile), profile


def import_keras_quietly() -> None:
    """Import TensorFlow with its native start-up chatter (absl/oneDNN notices, which
    ``TF_CPP_MIN_LOG_LEVEL`` no longer silences) sent to /dev/null; errors still raise."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] < "2":
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
