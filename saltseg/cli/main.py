"""The ``saltseg`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from saltseg import TILE, __version__
from saltseg.cli.common import (
    add_stage_args,
    data_dir,
    import_keras_quietly,
    nonneg_float,
    nonneg_int,
    positive_int,
    recipe_from_args,
    settings_from_args,
    unit_float,
)
from saltseg.core.errors import ConfigError, SaltsegError

Handler = Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- eval


def cmd_eval(args: argparse.Namespace) -> int:
    """Score a prediction RLE CSV against a truth RLE CSV."""
    from saltseg.core.atomic import atomic_open
    from saltseg.data.submission import evaluate_csvs

    df = evaluate_csvs(args.truth_csv, args.pred_csv, (args.size, args.size))
    truth_empty = df["truth_pixels"] == 0
    pred_empty = df["pred_pixels"] == 0
    print(f"images: {len(df)}")
    print(
        f"empty in truth: {int(truth_empty.sum())}   empty in prediction: {int(pred_empty.sum())}"
    )
    if (~truth_empty).any():
        print(f"score on non-empty truth: {df.loc[~truth_empty, 'score'].mean():.6f}")
    if truth_empty.any():
        print(f"score on empty truth: {df.loc[truth_empty, 'score'].mean():.6f}")
    if args.per_image:
        with atomic_open(args.per_image, "w", newline="") as fh:
            df.to_csv(fh, index=False, float_format="%.4f")
        print(f"per-image scores: {args.per_image}")
    print(f"score: {df['score'].mean():.6f}")
    return 0


# --------------------------------------------------------------------------- folds


def cmd_folds(args: argparse.Namespace) -> int:
    """Write the fold assignment of the labelled tiles."""
    from saltseg.data.folds import coverage_folds, depth_folds, external_folds, write_folds
    from saltseg.data.tiles import TGSDirectory

    data = TGSDirectory(data_dir(args))
    if args.fold_file:  # validate an external assignment against the data, write ours
        ids = data.train_ids()
        folds = external_folds(Path(args.fold_file), ids, args.n_folds)
        args.method = "file"
    elif args.method == "depth":
        ids = data.train_ids()
        folds = depth_folds(ids, data.depths(), args.n_folds)
    else:
        train = data.load_train(verify_rle=False)
        ids = train.ids
        folds = coverage_folds(train.masks, args.n_folds, args.seed)
    out = Path(args.out) if args.out else data.root / f"folds_{args.method}.csv"
    write_folds(out, ids, folds)
    sizes = np.bincount(folds, minlength=args.n_folds)
    print("fold sizes: " + ", ".join(f"{k}: {n}" for k, n in enumerate(sizes)))
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------- synth


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate a synthetic TGS-format dataset."""
    from saltseg.data import synthetic

    out = Path(args.out)
    t0 = time.perf_counter()
    summary = synthetic.generate_dataset(
        out,
        n_train=args.n_train,
        n_test=args.n_test,
        seed=args.seed,
        workers=args.workers,
        salt_contrast=args.salt_contrast,
    )
    dt = time.perf_counter() - t0
    n = summary["n_train"] + summary["n_test"]
    print(
        f"wrote {summary['n_train']} train + {summary['n_test']} test tiles to {out} "
        f"in {dt:.1f} s ({n / max(dt, 1e-9):.0f} tiles/s)"
    )
    print(
        f"train: {summary['empty_fraction']:.1%} empty masks, mean coverage "
        f"{summary['mean_coverage']:.1%}; black tiles: {summary['n_black']}"
    )
    if args.preview is not None:
        png = Path(args.preview) if args.preview else out / "preview.png"
        from saltseg.report.plots import save_preview

        save_preview(out, png, seed=args.seed)
        print(f"preview: {png}")
    return 0


# --------------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a TGS-format folder and summarise it."""
    from saltseg.data.tiles import TGSDirectory

    data = TGSDirectory(data_dir(args))
    t0 = time.perf_counter()
    train = data.load_train(verify_rle=True)
    print(f"{data.root}")
    cov = train.coverage
    print(
        f"train: {len(train)} tiles, {int((cov == 0).sum())} empty masks "
        f"({(cov == 0).mean():.1%}), {int(train.black.sum())} black, "
        f"mean coverage of non-empty {cov[cov > 0].mean() if (cov > 0).any() else 0:.1%}"
    )
    black_with_salt = [
        i for i, b, c in zip(train.ids, train.black, cov, strict=True) if b and c > 0
    ]
    if black_with_salt:
        print(f"warning: {len(black_with_salt)} black tile(s) with salt, e.g. {black_with_salt[0]}")
    if np.isnan(train.depths).any():
        print(f"warning: {int(np.isnan(train.depths).sum())} train id(s) without a depth")
    if not args.skip_test:
        test = data.load_test()
        print(f"test: {len(test)} tiles, {int(test.black.sum())} black")
    print(f"ok: read and verified in {time.perf_counter() - t0:.1f} s")
    return 0


# --------------------------------------------------------------------------- settings


def cmd_settings(args: argparse.Namespace) -> int:
    """Print the resolved settings."""
    for key, value in settings_from_args(args).resolved().items():
        print(f"{key}: {value}")
    return 0


# --------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    """Train a stage of a family (resumes and skips finished work)."""
    from saltseg.config.layout import stage_dir
    from saltseg.train.stage import train_stage

    settings = settings_from_args(args)
    recipe, profile = recipe_from_args(args, settings)
    folds = None if args.all_folds or args.fold is None else [args.fold]
    if args.pretrain_only:
        if not recipe.pretrain:
            raise ConfigError(f"{recipe.family}/{recipe.stage}: no pretrain phases to train")
        folds = []
    if args.encoder_weights:
        update = {"encoder_weights": str(Path(args.encoder_weights).resolve())}
        recipe = recipe.model_copy(update=update)

    print(
        f"training {recipe.family}/{recipe.stage} ({recipe.model}, profile {profile}) "
        f"-> {stage_dir(settings, recipe)}",
        flush=True,
    )
    results = train_stage(
        recipe,
        settings,
        folds=folds,
        profile=profile,
        verbose=args.verbose,
        budget_minutes=args.budget_minutes,
    )
    for key, phases in results.items():
        last = phases[-1]
        print(f"{key}: best val_score {last.best_score:.4f} ({last.name}, {last.epochs} epochs)")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saltseg", description="TGS Salt 1st-place solution (b.e.s. + phalanx) on Keras 3."
    )
    parser.add_argument("--version", action="version", version=f"saltseg {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an unexpected error"
    )
    parser.add_argument(
        "--settings", help="settings file (default: $SALTSEG_SETTINGS or ./SETTINGS.json)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("eval", help="score a prediction RLE CSV against labels")
    p.add_argument("truth_csv", help="labels, id,rle_mask (e.g. train.csv)")
    p.add_argument("pred_csv", help="predictions, id,rle_mask")
    p.add_argument("--per-image", metavar="CSV", help="also write per-image scores here")
    p.add_argument(
        "--size", type=positive_int, default=TILE, help=f"tile side in pixels (default {TILE})"
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("folds", help="write the cross-validation folds (id,fold CSV)")
    p.add_argument("--data", help="TGS data folder (default: DATA_DIR of the settings)")
    p.add_argument("--method", choices=["depth", "coverage"], default="depth")
    p.add_argument("--n-folds", type=positive_int, default=5)
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (coverage method)")
    p.add_argument(
        "--fold-file",
        metavar="CSV",
        help="check a fold assignment made elsewhere (id,fold[,...], e.g. the original's "
        "train_proc_v2_gr.csv) against the data and write it as ours",
    )
    p.add_argument("--out", help="output CSV (default: DATA/folds_<method>.csv)")
    p.set_defaults(func=cmd_folds)

    p = sub.add_parser("synth", help="generate a synthetic TGS-format seismic dataset")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n-train", type=positive_int, default=400)
    p.add_argument("--n-test", type=nonneg_int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--workers", type=positive_int, default=None, help="processes (default: cores, max 2)"
    )
    p.add_argument(
        "--salt-contrast",
        type=unit_float,
        default=0.0,
        metavar="C",
        help="0-1: salt darker than the sediments and weaker noise (the demo: 1); default 0",
    )
    p.add_argument(
        "--preview",
        nargs="?",
        const="",
        default=None,
        metavar="PNG",
        help="also save a sample grid (default OUT/preview.png)",
    )
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("check", help="validate a TGS-format data folder and summarise it")
    p.add_argument("data", nargs="?", help="TGS data folder (default: DATA_DIR of the settings)")
    p.add_argument("--skip-test", action="store_true", help="do not read test/images")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("train", help="train a stage of a family (resumable)")
    add_stage_args(p, "recipe name, e.g. stage1 (bes/configs/stage1.yaml)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--fold", type=nonneg_int, help="train only this fold")
    which.add_argument("--all-folds", action="store_true", help="every fold of the recipe")
    which.add_argument(
        "--pretrain-only",
        action="store_true",
        help="only the recipe's fold-independent pretrain phases (the folds start from them)",
    )
    p.add_argument(
        "--budget-minutes",
        type=nonneg_float,
        metavar="M",
        help="wall-clock budget per fold: epochs and cosine cycles are rescaled to end within "
        "it (default: the profile's, e.g. 30 for cpu; 0: none)",
    )
    p.add_argument(
        "--encoder-weights",
        metavar="FILE",
        help="ImageNet encoder for phases from scratch: torchvision resnet34/resnext50_32x4d "
        ".pth or .safetensors, or resnext50_imagenet_1000_no_top.h5 (the recipe's "
        "encoder_weights otherwise)",
    )
    p.add_argument(
        "--verbose", type=int, default=2, choices=[0, 1, 2], help="Keras progress (1: bar)"
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("settings", help="print the resolved SETTINGS.json")
    p.set_defaults(func=cmd_settings)

    from saltseg.nets import zoo

    zoo.add_models_parser(sub)
    from saltseg.post import mosaic

    mosaic.add_mosaic_parser(sub)

    from saltseg.report import curves, eda, review

    eda.add_eda_parser(sub)
    curves.add_report_parser(sub)
    review.add_review_parser(sub)

    from saltseg.cli import pipeline as pipeline_cli
    from saltseg.cli import weights as weights_cli

    pipeline_cli.add_pipeline_parsers(sub)
    from saltseg.cli import runners

    runners.add_run_parser(sub, main)
    weights_cli.add_weights_parser(sub)

    from saltseg.cli import segy as segy_cli

    segy_cli.add_segy_parser(sub)

    return parser


KERAS_COMMANDS = {"train", "predict", "models"}


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Warnings on one line, without the source line (``warning: <path>: ...``)."""
    print(f"warning: {message}", file=file or sys.stderr)


def _file_of(exc: BaseException) -> str | None:
    """The file an exception (or one it was raised from) names, when it names one."""
    seen: BaseException | None = exc
    while seen is not None:
        name = getattr(seen, "filename", None)
        if name:
            return str(name)
        seen = seen.__cause__ or seen.__context__
    return None


def report_unexpected(command: str, exc: BaseException, debug: bool) -> int:
    """One line naming the command, the file (when known) and a hint; the traceback only
    with ``--debug``. Exit status 3 (2: a described bad input)."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    where = _file_of(exc)
    print(
        f"error: saltseg {command}: unexpected {type(exc).__name__}: {exc}"
        + (f" (file: {where})" if where else "")
        + ("" if debug else "; rerun with --debug for the traceback, and report it"),
        file=sys.stderr,
    )
    return 3


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or bool(os.environ.get("SALTSEG_DEBUG"))
    if not debug:
        warnings.showwarning = _show_warning
    handler: Handler = args.func
    try:
        if args.command in KERAS_COMMANDS or getattr(args, "needs_keras", False):
            import_keras_quietly()
        return handler(args)
    except SaltsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one place that reports any other failure
        return report_unexpected(args.command, exc, debug)


if __name__ == "__main__":
    sys.exit(main())
