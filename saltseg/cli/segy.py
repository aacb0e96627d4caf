"""``saltseg segy info`` and ``saltseg segy predict``: salt on whole SEG-Y sections and volumes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from saltseg import TILE
from saltseg.cli.common import (
    add_backend_args,
    add_stage_args,
    import_keras_quietly,
    recipe_from_args,
    settings_from_args,
)
from saltseg.config.recipe import StageRecipe, resolve_recipe
from saltseg.config.settings import Settings
from saltseg.core.errors import ConfigError
from saltseg.data.segy import Direction, SegyOptions

DEFAULT_STAGES: dict[str, list[tuple[str, str]]] = {
    "cpu": [("phalanx", "stage1")],
    "demo": [("bes", "stage2"), ("phalanx", "stage3")],
    "tiny": [("bes", "stage2"), ("phalanx", "stage3")],
    "full": [("bes", "stage2"), ("phalanx", "stage3")],
}
"""What ``./predict.sh`` predicts with, per profile, when no stage is named."""

DIRECTIONS: dict[str, tuple[Direction, ...]] = {
    "inline": ("inline",),
    "crossline": ("crossline",),
    "both": ("inline", "crossline"),
}


def segy_options(args: argparse.Namespace) -> SegyOptions:
    """The geometry options of the command line."""
    return SegyOptions(args.iline_byte, args.xline_byte, args.endian, args.two_d)


# --------------------------------------------------------------------------- info


def _print_info(info: dict[str, Any]) -> None:
    amps = info.pop("amplitudes")
    problem = info.pop("problem", None)
    for key, value in info.items():
        print(f"{key}: {value}")
    pct = ", ".join(f"{k} {v:.6g}" for k, v in amps["percentiles"].items())
    print(
        f"amplitudes ({amps['traces_sampled']} traces sampled, {amps['dead_traces']} dead): "
        f"min {amps['min']:.6g}, max {amps['max']:.6g}, mean {amps['mean']:.6g}, "
        f"std {amps['std']:.6g}, rms {amps['rms']:.6g}; {pct}"
    )
    if problem:
        print(f"geometry: {problem}")


def cmd_segy_info(args: argparse.Namespace) -> int:
    """Geometry, headers and amplitude statistics of a SEG-Y file."""
    from saltseg.data.segy import describe

    info = describe(args.file, segy_options(args))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_info(info)
    return 0


# --------------------------------------------------------------------------- predict


def stage_recipes(args: argparse.Namespace, settings: Settings) -> tuple[list[StageRecipe], str]:
    """The named stage, else ``./predict.sh``'s stages for the profile."""
    if args.recipe or args.family or args.stage:
        recipe, profile = recipe_from_args(args, settings)
        return [recipe], profile
    profile = args.profile or settings.PROFILE
    return [resolve_recipe(None, f, s, profile) for f, s in DEFAULT_STAGES[profile]], profile


def _scale(values: list[float] | None) -> tuple[float, float]:
    if not values:
        return 1.0, 1.0
    if len(values) > 2 or min(values) <= 0:
        raise ConfigError("--scale takes one or two positive factors (traces, samples)")
    return (values[0], values[-1])


def cmd_segy_predict(args: argparse.Namespace) -> int:
    """Salt probability and mask SEG-Y files of a volume or line, and previews."""
    from pathlib import Path

    from saltseg.config.layout import stage_dir
    from saltseg.data.segy import open_geometry
    from saltseg.infer.segy_volume import PROB_NAME, VolumeOptions, predict_volume
    from saltseg.infer.stage import StagePredictor, stage_weight_files
    from saltseg.infer.tiling import StageTiles
    from saltseg.report.segy_preview import (
        default_lines,
        line_position,
        parse_line,
        save_line_previews,
    )

    options = VolumeOptions(
        directions=DIRECTIONS[args.direction],
        stride=args.stride,
        scale=_scale(args.scale),
        percentiles=tuple(args.clip_percentiles),
        clip_mode=args.clip_mode,
        sample_traces=args.sample_traces,
        threshold=args.threshold,
        batch=args.batch_size,
        mmap=not args.no_mmap,
    )
    if not 1 <= options.stride <= TILE:
        raise ConfigError(f"--stride must be between 1 and {TILE}, got {options.stride}")
    geo_options = segy_options(args)
    geometry = open_geometry(args.file, geo_options)
    lines = (
        [parse_line(s) for s in args.preview_lines]
        if args.preview_lines
        else default_lines(geometry)
    )
    for choice in lines:
        line_position(geometry, choice)  # a wrong line number fails before the long run
    settings = settings_from_args(args)
    recipes, profile = stage_recipes(args, settings)
    weights = [(r, stage_dir(settings, r)) for r in recipes]
    weights = [(r, root, stage_weight_files(r, root)) for r, root in weights]  # before Keras
    import_keras_quietly()
    stages, model = [], {"profile": profile, "flip_tta": not args.no_tta, "stages": []}
    for recipe, root, files in weights:
        predictor = StagePredictor(recipe, files, args.network_batch, args.backend)
        print(f"[segy] {recipe.family}/{recipe.stage}: {predictor.describe()}")
        stages.append((predictor, sorted(files)))
        model["stages"].append(
            {
                "family": recipe.family,
                "stage": recipe.stage,
                "model": recipe.model,
                "backend": predictor.backend,
                "weights": [w.signature(root) for k in sorted(files) for w in files[k]],
            }
        )
    names = " + ".join(f"{r.family}/{r.stage}" for r in recipes)
    n_il, n_xl, ns = geometry.shape
    shape = f"{n_xl} traces" if geometry.kind == "2d" else f"{n_il} x {n_xl} traces"
    print(f"[segy] {args.file}: {shape} x {ns} samples; {names} (profile {profile}) -> {args.out}")
    out = Path(args.out)
    res = predict_volume(geometry, StageTiles(stages, not args.no_tta), out, options, model)
    if res.resumed_lines:
        print(f"[segy] resumed after {res.resumed_lines} finished line(s)")
    s = res.seconds
    print(
        f"[segy] {res.lines} line(s): read {s['read']:.1f} s, predict {s['predict']:.1f} s, "
        f"write {s['write']:.1f} s -> {res.probability}, {res.mask}"
    )
    prob_geometry = open_geometry(out / PROB_NAME, geo_options)
    for png in save_line_previews(
        geometry,
        prob_geometry,
        res.amplitude,
        lines,
        options.threshold,
        out / "preview",
    ):
        print(f"[segy] preview: {png}")
    return 0


# --------------------------------------------------------------------------- parsers


def _add_geometry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="SEG-Y file (3D post-stack volume or 2D line)")
    p.add_argument("--iline-byte", type=int, default=189, help="inline number's byte (189)")
    p.add_argument("--xline-byte", type=int, default=193, help="crossline number's byte (193)")
    p.add_argument("--endian", choices=["big", "little"], help="byte order (default: detected)")
    p.add_argument(
        "--2d",
        dest="two_d",
        action="store_true",
        help="a 2D line: the traces, in file order, as one section",
    )


def add_segy_parser(sub: Any) -> None:
    top = sub.add_parser("segy", help="salt on SEG-Y sections and volumes (info, predict)")
    segy_sub = top.add_subparsers(dest="segy_command", required=True, metavar="SUBCOMMAND")

    p = segy_sub.add_parser("info", help="geometry, headers and amplitude statistics")
    _add_geometry_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_segy_info)

    p = segy_sub.add_parser(
        "predict", help="salt_probability.sgy, salt_mask.sgy and PNG previews of a file"
    )
    _add_geometry_args(p)
    p.add_argument("--out", required=True, help="output folder")
    add_stage_args(p, "recipe name (default: predict.sh's stages for the profile)")
    p.add_argument("--direction", choices=list(DIRECTIONS), default="inline")
    p.add_argument(
        "--stride", type=int, default=TILE // 2, help=f"tile stride (default {TILE // 2})"
    )
    p.add_argument(
        "--scale",
        type=float,
        nargs="+",
        metavar="F",
        help="resample sections first: one factor, or two (traces, samples); e.g. 0.5 when "
        "traces are twice as dense as in the training tiles",
    )
    p.add_argument(
        "--clip-percentiles",
        type=float,
        nargs=2,
        default=[0.5, 99.5],
        metavar=("LOW", "HIGH"),
        help="amplitude percentiles mapped to the grey range (default 0.5 99.5)",
    )
    p.add_argument(
        "--clip-mode",
        choices=["symmetric", "range"],
        default="symmetric",
        help="symmetric: zero amplitude mid-grey, like the competition tiles (default)",
    )
    p.add_argument(
        "--sample-traces", type=int, default=2000, help="traces sampled for the clip values"
    )
    p.add_argument("--threshold", type=float, default=0.5, help="mask threshold (default 0.5)")
    p.add_argument("--no-tta", action="store_true", help="no horizontal-flip TTA")
    p.add_argument("--batch-size", type=int, default=256, help="tiles per predictor call")
    add_backend_args(p)
    p.add_argument("--no-mmap", action="store_true", help="read without memory-mapping")
    p.add_argument(
        "--preview-lines",
        nargs="+",
        metavar="LINE",
        help="lines to draw: inline:N, crossline:N or N (default: the middle ones)",
    )
    p.set_defaults(func=cmd_segy_predict)
