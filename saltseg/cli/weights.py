"""``saltseg weights``: import the original published weights, check them, name their stage."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from saltseg.cli.common import settings_from_args
from saltseg.config.settings import PROFILES
from saltseg.core.errors import DataError


def _profile(args: argparse.Namespace) -> str:
    """``tiny`` (fake tiny-width originals) or ``full``: the original networks (also under
    the ``cpu`` profile, which has no original weights of its own)."""
    profile = args.profile or settings_from_args(args).PROFILE
    return "tiny" if profile == "tiny" else "full"


def cmd_import(args: argparse.Namespace) -> int:
    """Convert the published weights into our layout (nothing is written on failure)."""
    from saltseg.infer.original import import_original

    settings = settings_from_args(args)
    variants = {"phalanx": args.phalanx_scse} if args.phalanx_scse else None
    results = import_original(Path(args.original), settings, _profile(args), args.family, variants)
    for r in results:
        print(f"[import {r.family}] {r.files} files in {r.seconds:.1f} s -> {r.stage_root}")
        print(f"[import {r.family}] last file: {r.report.summary()}")
    print("next: saltseg weights check   (scores the imported weights on DATA_DIR's train tiles)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Score every imported fold on sampled train tiles; fail when a family scores like a
    wrong map (no better than ``--min-score``)."""
    from saltseg.infer.original import check_original, set_variant

    settings = settings_from_args(args)
    profile = _profile(args)
    rows, empty = check_original(
        settings, profile, args.tiles, args.seed, args.family, folds=args.fold
    )
    print(f"an all-empty prediction scores {empty:.4f} on these tiles")
    print("| family | scSE | folds | mean | min |")
    print("|---|---|---|---:|---:|")
    best: dict[str, tuple[float, str]] = {}
    for fam in dict.fromkeys(r.family for r in rows):
        for variant in dict.fromkeys(r.variant for r in rows if r.family == fam):
            scores = [r.score for r in rows if r.family == fam and r.variant == variant]
            mean = sum(scores) / len(scores)
            print(f"| {fam} | {variant} | {len(scores)} | {mean:.4f} | {min(scores):.4f} |")
            if mean > best.get(fam, (-1.0, ""))[0]:
                best[fam] = (mean, variant)
    failed = [f for f, (mean, _) in best.items() if mean < args.min_score]
    for fam, (mean, variant) in best.items():
        if len({r.variant for r in rows if r.family == fam}) > 1:
            print(f"{fam}: the {variant!r} scSE variant scores best ({mean:.4f})")
            if args.adopt and fam not in failed:
                path = set_variant(settings, fam, variant, profile)
                print(f"{fam}: predicting with {variant!r} from now on ({path})")
    if failed:
        raise DataError(
            f"imported weights of {', '.join(failed)} score below {args.min_score} on train "
            f"tiles (empty prediction: {empty:.4f}): what a wrong map or wrong files give"
        )
    print("ok: the imported weights predict the train tiles")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    """Print the stage that predicts with a family's imported weights (predict.sh)."""
    from saltseg.infer.original import original_stage

    print(original_stage(settings_from_args(args), args.family, _profile(args)))
    return 0


def add_weights_parser(sub: Any) -> None:
    p = sub.add_parser("weights", help="import and check the original published weights")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")

    q = wsub.add_parser(
        "import",
        help="convert the unzipped original weights into our layout",
        description="Read bes/weights/unet_resnext_50_lovasz_stage_2_*/fold_*.hdf5 and "
        "phalanx/weights/model_128_res34v5*.pth under ORIGINAL_DIR into BES_WEIGHTS_DIR/"
        "original and PHALANX_WEIGHTS_DIR/original (with manifest.json).",
    )
    q.add_argument("original", metavar="ORIGINAL_DIR", help="the unzipped original weights")
    q.add_argument("--family", action="append", help="only this family (repeatable)")
    q.add_argument("--phalanx-scse", choices=["map", "gated"], help="scSE variant (default map)")
    q.add_argument("--profile", choices=PROFILES, help="tiny: fake tiny-width originals (tests)")
    q.set_defaults(func=cmd_import, needs_keras=True)

    q = wsub.add_parser("check", help="score the imported weights on DATA_DIR train tiles")
    q.add_argument("--tiles", type=int, default=64, help="sampled train tiles (default 64)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--min-score", type=float, default=0.6, help="fail below this mean score")
    q.add_argument("--family", action="append", help="only this family (repeatable)")
    q.add_argument("--fold", type=int, action="append", help="only this fold (repeatable)")
    q.add_argument("--adopt", action="store_true", help="predict with the best scSE variant")
    q.add_argument("--profile", choices=PROFILES)
    q.set_defaults(func=cmd_check, needs_keras=True)

    q = wsub.add_parser("stage", help="the stage that predicts with a family's imported weights")
    q.add_argument("--family", required=True)
    q.add_argument("--profile", choices=PROFILES)
    q.set_defaults(func=cmd_stage)
