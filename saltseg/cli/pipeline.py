"""``saltseg predict``, ``saltseg ensemble`` and ``saltseg pseudo``: the prediction side.

``train.sh`` and ``predict.sh`` chain these with ``saltseg train``; each step reuses its
output when its inputs are unchanged, so a rerun after a crash picks up where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from saltseg.cli.common import (
    add_backend_args,
    add_stage_args,
    nonneg_float,
    nonneg_int,
    positive_int,
    recipe_from_args,
    settings_from_args,
    unit_float,
)
from saltseg.core.errors import ConfigError
from saltseg.core.registry import REGISTRY


def _under(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base / p


def _images_of(args: argparse.Namespace, meta: dict[str, Any], default: Path | None) -> Path:
    """The predicted tiles' folder: ``--images``, else the probability file's, else default."""
    if args.images:
        images = Path(args.images)
    elif meta.get("images_dir"):
        images = Path(meta["images_dir"])
    elif default is not None:
        images = default
    else:
        raise ConfigError("the probability file does not name its tiles: give --images DIR")
    if not images.is_dir():
        raise ConfigError(f"{images}: image folder not found (give --images DIR)")
    return images


# --------------------------------------------------------------------------- predict


def cmd_predict(args: argparse.Namespace) -> int:
    """Probabilities of a trained stage: test tiles, or out-of-fold validation tiles."""
    from saltseg.config.layout import probs_path, stage_dir
    from saltseg.infer.stage import predict_oof, predict_test

    settings = settings_from_args(args)
    recipe, profile = recipe_from_args(args, settings)
    root = stage_dir(settings, recipe)
    out = (
        Path(args.out) if args.out else probs_path(settings, args.set, recipe.family, recipe.stage)
    )
    if args.set == "oof":
        res = predict_oof(
            recipe, root, settings, out, args.network_batch, not args.no_tta, args.backend
        )
        folds = ", ".join(f"fold {k}: {s:.4f}" for k, s in res.fold_scores.items())
        print(f"[{recipe.family}/{recipe.stage}] out-of-fold: {folds}")
        print(
            f"[{recipe.family}/{recipe.stage}] validation score {res.score:.4f} at threshold "
            f"0.5 (best {res.best_score:.4f} at {res.best_threshold:.2f}) -> {res.path}"
        )
        return 0
    if args.images:
        images = Path(args.images)
    elif args.competition_test:
        images = settings.data_dir / "test" / "images"
    else:
        images = settings.test_images_dir
    predict_test(
        recipe,
        root,
        images,
        out,
        profile,
        args.network_batch,
        args.chunk,
        not args.no_tta,
        args.backend,
    )
    return 0


# --------------------------------------------------------------------------- ensemble


def cmd_ensemble(args: argparse.Namespace) -> int:
    """Blend stage probabilities into masks and a submission CSV."""
    from saltseg.core.lock import locked
    from saltseg.data.probs import read_probs
    from saltseg.data.tiles import black_tiles
    from saltseg.post.ensemble import (
        blend,
        save_blend,
        submission_order,
        to_masks,
        write_submission,
    )

    settings = settings_from_args(args)
    maps = [read_probs(p) for p in args.probs]
    b = blend(maps, args.weights, args.minmax)
    images = _images_of(args, maps[0].meta, None)
    black = black_tiles(images, b.ids)
    masks = to_masks(b.q, args.threshold, black)
    sample = settings.data_dir / "sample_submission.csv"  # optional: row order only
    order = submission_order(sample, b.ids)
    out = Path(args.out) if args.out else settings.predictions_dir / "test_prediction.csv"
    with locked(out):  # the CSV last: it is replaced only when the blend is written too
        if args.out_probs:
            save_blend(
                Path(args.out_probs),
                b,
                [str(p) for p in args.probs],
                blend_weights(args, maps),
                images,
            )
        write_submission(out, b.ids, masks, order)
    empty = int((masks.reshape(len(masks), -1).sum(axis=1) == 0).sum())
    normed = [Path(p).name for p, n in zip(args.probs, b.normalised, strict=True) if n]
    print(
        f"ensemble of {len(maps)} prediction(s) (min-max normalised: {', '.join(normed) or '-'})"
        f", threshold {args.threshold}: {len(b.ids)} tiles, {int(black.sum())} black, "
        f"{empty} empty masks, rows in {'sample_submission.csv' if order else 'sorted id'} "
        f"order -> {out}"
    )
    return 0


def blend_weights(args: argparse.Namespace, maps: list[Any]) -> list[float]:
    """The ``--weights`` given, else one per probability file (the blend normalises)."""
    return list(args.weights) if args.weights else [1.0] * len(maps)


# --------------------------------------------------------------------------- pseudo


def cmd_pseudo(args: argparse.Namespace) -> int:
    """Choose pseudo-labels from blended test probabilities."""
    from saltseg.data.probs import read_probs
    from saltseg.data.tiles import black_tiles
    from saltseg.post.pseudo import is_complete, make_pseudo_labels

    settings = settings_from_args(args)
    source = Path(args.probs)
    out = _under(settings.predictions_dir, args.out)
    if not args.force and is_complete(out, source, args.rule):
        print(f"pseudo-labels ({args.rule}) up to date: {out}")
        return 0
    maps = read_probs(source)
    images = _images_of(args, maps.meta, settings.data_dir / "test" / "images")
    black = black_tiles(images, maps.ids)
    res = make_pseudo_labels(
        maps, black, args.rule, out, args.threshold, seed=args.seed, min_tiles=args.min_tiles
    )
    folds = ", ".join(f"fold {k}: {n}" for k, n in res.per_fold.items())
    print(
        f"pseudo-labels ({args.rule}): {res.n_chosen} of {res.n_tiles} tiles"
        + (f" ({folds})" if folds else "")
        + f" -> {out}"
    )
    if res.topped_up:
        print(
            f"pseudo-labels: the rule chose only {res.n_chosen - res.topped_up}; added the "
            f"{res.topped_up} most confident other tiles (--min-tiles {args.min_tiles})"
        )
    return 0


# --------------------------------------------------------------------------- parsers


def add_pipeline_parsers(sub: Any) -> None:
    p = sub.add_parser("predict", help="predict with a trained stage (folds, snapshots, TTA)")
    add_stage_args(p)
    p.add_argument(
        "--set",
        choices=["test", "oof"],
        default="test",
        help="test: a folder of tiles; oof: each fold's validation tiles (prints the score)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--images", help="tiles to predict (default: the settings' test images)")
    where.add_argument(
        "--competition-test",
        action="store_true",
        help="DATA_DIR/test/images even when NEW_TEST_IMAGES_DATA is set (pseudo-labels)",
    )
    p.add_argument("--out", help="output .h5 (default PREDICTIONS_DIR/probs/<set>/F_S.h5)")
    add_backend_args(p, "--batch-size", "--network-batch")
    p.add_argument("--chunk", type=positive_int, default=1024, help="tiles per streamed chunk")
    p.add_argument("--no-tta", action="store_true", help="no horizontal-flip TTA")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("ensemble", help="blend probabilities -> submission RLE CSV")
    p.add_argument("probs", nargs="+", help="probability files (saltseg predict outputs)")
    p.add_argument("--weights", type=nonneg_float, nargs="+", help="one per file (default equal)")
    p.add_argument(
        "--minmax",
        choices=["auto", "all", "none"],
        default="auto",
        help="min-max normalise (auto: phalanx predictions only)",
    )
    p.add_argument("--threshold", type=unit_float, default=0.5)
    p.add_argument("--images", help="the predicted tiles (default: from the first file)")
    p.add_argument("--out", help="CSV (default PREDICTIONS_DIR/test_prediction.csv)")
    p.add_argument("--out-probs", help="also write the blended probabilities (.h5)")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("pseudo", help="choose pseudo-labels from blended test probabilities")
    p.add_argument("probs", help="blended test probabilities (.h5)")
    p.add_argument("--rule", choices=REGISTRY.names("pseudo_rules"), required=True)
    p.add_argument("--out", required=True, help="folder (relative: under PREDICTIONS_DIR)")
    p.add_argument("--images", help="the tiles (default: from the probability file)")
    p.add_argument("--threshold", type=unit_float, default=0.5)
    p.add_argument("--seed", type=int, default=0, help="fold dealing (phalanx rule)")
    p.add_argument(
        "--min-tiles",
        type=nonneg_int,
        default=0,
        help="top up with the most confident other tiles to at least this many (tiny runs)",
    )
    p.add_argument("--force", action="store_true", help="rewrite even when up to date")
    p.set_defaults(func=cmd_pseudo)
