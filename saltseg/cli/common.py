"""Helpers shared by the command-line modules: settings, data folder, stage options."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from saltseg.config.recipe import StageRecipe, resolve_recipe
from saltseg.config.settings import PROFILES, Settings, data_dir_for, load_settings
from saltseg.core.registry import family_names


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
        type=int,
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
