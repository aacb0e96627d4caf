"""The `cpu` profile under a wall-clock budget, scored honestly on the real labelled tiles.

Usage: python bench/cpu_budget.py [--minutes 30 | --epochs 15,20] [--data DIR] [--work DIR]
                                  [--keep] [--json FILE] [--score-only]

Trains `saltseg train --family phalanx --stage stage1 --profile cpu` with a budget of
``--minutes`` on the labelled tiles of ``$TGS_DATA`` minus a coverage-stratified 20%
held-out split (fold 0 of 5 by coverage class), then predicts the held-out tiles with the
profile's weights (the final phase's snapshots, no choice made on held-out scores) and
horizontal-flip TTA, tunes the threshold on one half of the split and reports the
competition score on the other half, without and with predict.sh's jigsaw-mosaic
post-processing (only the training split's masks known). Also reports the epochs done,
training tiles/s in the steady state and the FLOP/s achieved against this machine's
measured float32 matmul peak (forward FLOPs of the Conv/Dense layers counted analytically,
training ~ 3x forward), and against the bfloat16 peak too when the profile trains in mixed
bfloat16. ``--score-only`` scores a finished run in ``--work`` again without training.
``--epochs`` replaces the budget with a fixed number of epochs per phase (cosine cycles
rescaled, as the budget does): the same work whatever the hour, since this machine's speed
varies about 2x between hours and a wall-clock budget turns that into fewer epochs.
Prints a Markdown table; the training time counts towards the budget (and so does the
profile's labelling of test tiles for its pseudo-label phase), prediction does not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def matmul_peak_gflops(
    sizes: tuple[int, ...] = (1024, 2048, 3072), reps: int = 4, dtype: str = "float32"
) -> float:
    """Best GFLOP/s of a square ``dtype`` matmul (TensorFlow/oneDNN, all cores)."""
    import tensorflow as tf

    best = 0.0
    for n in sizes:
        a = tf.cast(tf.random.normal((n, n)), dtype)
        b = tf.cast(tf.random.normal((n, n)), dtype)
        tf.matmul(a, b).numpy()
        t0 = time.perf_counter()
        for _ in range(reps):
            c = tf.matmul(a, b)
        c.numpy()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def forward_flops(model) -> int:
    """Multiply-adds x 2 of every Conv2D, Conv2DTranspose and Dense layer for one tile."""
    import keras

    total = 0
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Conv2DTranspose):
            kh, kw, cout, cin = layer.kernel.shape
            _, h, w, _ = layer.input.shape
            total += 2 * kh * kw * cin * cout * h * w
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin_g, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2 * kh * kw * cin_g * cout * h * w
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            total += 2 * cin * cout
    return int(total)


def half_split(masks: np.ndarray, seed: int) -> np.ndarray:
    """Two halves (bool: in the tuning half) stratified by coverage class."""
    from saltseg.data.folds import mask_coverage_class

    classes = mask_coverage_class(masks)
    rng = np.random.default_rng(seed)
    tune = np.zeros(len(masks), dtype=bool)
    for c in np.unique(classes):
        idx = rng.permutation(np.flatnonzero(classes == c))
        tune[idx[: (len(idx) + 1) // 2]] = True
    return tune


def snapshot_files(phase_dir: Path) -> list[Path]:
    snaps = sorted(phase_dir.glob("snapshot_*.weights.h5"))
    return snaps or [phase_dir / "last.weights.h5"]


def mosaic_postprocess(
    data: Path, work: Path, val_ids: list[str], pred: np.ndarray
) -> tuple[np.ndarray, int]:
    """``pred`` (held-out masks) after predict.sh's jigsaw-mosaic post-processing.

    The mosaics of all train + test tiles are cached under ``work``; only the training
    split's masks are known (the held-out tiles' masks stay hidden). Returns the new masks
    and how many held-out tiles changed.
    """
    from saltseg.post import mosaic

    mosaics, _, _ = mosaic.load_or_build(data, None, work / "mosaics")
    known = mosaic.known_train_masks(data, exclude=val_ids)
    new, report = mosaic.postprocess(mosaics, val_ids, pred, known)
    return new, report.total_changed


def fixed_epochs(recipe, epochs: list[int]):
    """``recipe`` with each phase's epochs fixed (cosine cycles rescaled) and no budget."""
    from saltseg.train.budget import scale_phase

    if len(epochs) != len(recipe.phases) or min(epochs) < 1:
        names = ", ".join(p.name for p in recipe.phases)
        raise ValueError(f"--epochs needs one positive count per phase ({names}), got {epochs}")
    phases = [scale_phase(p, n) for p, n in zip(recipe.phases, epochs, strict=True)]
    return recipe.model_copy(update={"phases": phases, "budget_minutes": 0})


def run(
    minutes: float,
    data: Path,
    work: Path,
    seed: int = 0,
    score_only: bool = False,
    epochs: list[int] | None = None,
) -> dict:
    import keras

    from saltseg.config.layout import stage_dir
    from saltseg.config.precision import resolve_precision
    from saltseg.config.recipe import load_stage
    from saltseg.config.settings import load_settings, write_settings
    from saltseg.core.metric import best_threshold, score
    from saltseg.infer.networks import build_model, load_model_weights, predict_probabilities
    from saltseg.nets.zoo import get_model_spec
    from saltseg.train.folddata import prepare_fold
    from saltseg.train.stage import train_stage

    settings_file = write_settings(
        work / "SETTINGS.json",
        DATA_DIR=str(data),
        PHALANX_WEIGHTS_DIR=str(work / "phalanx"),
        BES_WEIGHTS_DIR=str(work / "bes"),
        PREDICTIONS_DIR=str(work / "predictions"),
        PROFILE="cpu",
    )
    settings = load_settings(settings_file)
    recipe = load_stage("phalanx", "stage1", "cpu").model_copy(
        update={"fold_method": "coverage", "n_folds": 5, "folds": [0], "seed": seed}
    )
    if epochs:
        recipe, minutes = fixed_epochs(recipe, epochs), 0.0
    policy = resolve_precision(recipe.precision)
    peak = matmul_peak_gflops()
    # the training arithmetic's own peak: bfloat16 products run at about twice float32's
    peak_policy = matmul_peak_gflops(dtype="bfloat16") if policy == "mixed_bfloat16" else peak
    fold_dir = stage_dir(settings, recipe) / "fold_0"
    load_before = os.getloadavg()
    if score_only:  # a finished run in ``work``: score it again, its time from budget.json
        budget_file = fold_dir / "budget.json"
        if not budget_file.is_file():
            raise SystemExit(f"cpu_budget: {budget_file}: no finished budgeted run to score")
        train_s = float(json.loads(budget_file.read_text())["spent_s"])
    else:
        t0 = time.perf_counter()
        train_stage(recipe, settings, profile="cpu", verbose=0, budget_minutes=minutes)
        train_s = time.perf_counter() - t0
    load_after = os.getloadavg()

    records = []
    for phase in recipe.phases:
        log = fold_dir / phase.name / "log.jsonl"
        records += [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    spec = get_model_spec(recipe.model)
    model = build_model(spec)
    flops = forward_flops(model)
    fold = prepare_fold(recipe, settings, 0, need_pseudo=False)
    n_train = len(fold.train)
    batch = recipe.phases[0].batch_size
    step_s = float(np.median([r["step_seconds"] for r in records]))
    steady_tiles_s = batch / step_s
    epoch_train_s = [r["seconds"] - r.get("val_seconds", 0.0) for r in records]
    labelled = {}  # phases with self-labels: the test tiles they labelled and how long it took
    for phase in recipe.phases:
        done = fold_dir / phase.name / "self_labels" / "DONE.json"
        if done.is_file():
            labelled[phase.name] = json.loads(done.read_text())
    epoch_tiles = [
        (n_train + labelled.get(p.name, {}).get("tiles", 0)) // batch * batch
        for p in recipe.phases
        for line in (fold_dir / p.name / "log.jsonl").read_text().splitlines()
        if line.strip()
    ]
    overall_tiles_s = float(np.sum(epoch_tiles)) / float(np.sum(epoch_train_s))

    from saltseg.data.adapters import get_adapter

    adapter = get_adapter(spec.adapter)
    last = recipe.phases[-1].name
    files = snapshot_files(fold_dir / last)
    t1 = time.perf_counter()
    prob = np.zeros(fold.val.images.shape, dtype=np.float32)
    for f in files:
        load_model_weights(model, f)
        prob += predict_probabilities(
            model, fold.val.images, adapter, None, logits=True, batch_size=32, flip_tta=True
        )
    prob /= len(files)
    predict_s = time.perf_counter() - t1
    prob[fold.val_black] = 0.0
    truth = fold.val.masks
    tune = half_split(truth, seed)
    th, tune_score, _ = best_threshold(truth[tune], prob[tune])
    test_score = score(truth[~tune], prob[~tune] > th)
    test_05 = score(truth[~tune], prob[~tune] > 0.5)
    # the other direction too, as a check on the split's noise
    th2, _, _ = best_threshold(truth[~tune], prob[~tune])
    other = score(truth[tune], prob[tune] > th2)
    # as predict.sh writes it: the same thresholds, then the jigsaw-mosaic post-processing
    # with the training split's masks known and the held-out ones hidden
    pred = np.where(tune[:, None, None], prob > th2, prob > th)
    mosaic_s, changed = mosaic_postprocess(data, work, fold.val.ids, pred)
    mosaic_test = score(truth[~tune], mosaic_s[~tune])
    mosaic_other = score(truth[tune], mosaic_s[tune])
    keras.backend.clear_session()
    gflops = 3 * flops * steady_tiles_s / 1e9
    return {
        "minutes": minutes,
        "fixed_epochs": epochs or None,
        "model": recipe.model,
        "precision": policy,
        "train_tiles": n_train,
        "heldout_tiles": len(truth),
        "score_test_half": test_score,
        "score_test_half_t05": test_05,
        "threshold": th,
        "score_tune_half": tune_score,
        "score_swapped": other,
        "score_mosaic_test_half": mosaic_test,
        "score_mosaic_swapped": mosaic_other,
        "mosaic_changed": changed,
        "epochs_done": len(records),
        "phase_epochs": {
            p.name: json.loads((fold_dir / p.name / "DONE.json").read_text())["epochs"]
            for p in recipe.phases
        },
        "snapshots": [f.name for f in files],
        "self_labelled": {k: [v["tiles"], v["seconds"]] for k, v in labelled.items()},
        "train_s": train_s,
        "predict_s": predict_s,
        "steady_tiles_s": steady_tiles_s,
        "overall_tiles_s": overall_tiles_s,
        "fwd_gflop_per_tile": flops / 1e9,
        "gflops": gflops,
        "peak_gflops": peak,
        "share_of_peak": gflops / peak,
        "peak_precision_gflops": peak_policy,
        "share_of_precision_peak": gflops / peak_policy,
        "load": [round(x, 2) for x in (*load_before, *load_after)],
    }


def table(r: dict) -> str:
    achieved = (
        f"{r['gflops']:.0f} = {100 * r['share_of_peak']:.0f}% of the measured float32 "
        f"matmul peak {r['peak_gflops']:.0f}"
    )
    if r["precision"] != "float32":
        achieved += (
            f"; {100 * r['share_of_precision_peak']:.0f}% of the {r['precision']} "
            f"peak {r['peak_precision_gflops']:.0f}"
        )
    phases = ", ".join(f"{k} {v}" for k, v in r["phase_epochs"].items())
    if r.get("fixed_epochs"):
        budget = f"none: fixed epochs {' + '.join(map(str, r['fixed_epochs']))}"
    else:
        budget = f"{r['minutes']:g} min"
    rows = [
        ("budget", f"{budget} (training took {r['train_s'] / 60:.1f} min)"),
        (
            "network",
            f"{r['model']}, {r['fwd_gflop_per_tile']:.2f} GFLOP/tile forward, "
            f"trained in {r['precision']}",
        ),
        ("tiles", f"{r['train_tiles']} train, {r['heldout_tiles']} held out (coverage 20%)"),
        ("epochs done", f"{r['epochs_done']} ({phases})"),
        (
            "**score, held-out test half**",
            f"**{r['score_test_half']:.4f}** (threshold {r['threshold']:.2f} tuned on the "
            f"other half; at 0.5: {r['score_test_half_t05']:.4f}; halves swapped: "
            f"{r['score_swapped']:.4f})",
        ),
        (
            "score with predict.sh's mosaic post-processing",
            f"{r['score_mosaic_test_half']:.4f} (halves swapped: "
            f"{r['score_mosaic_swapped']:.4f}; {r['mosaic_changed']} held-out tiles changed)",
        ),
        *(
            (f"test tiles self-labelled ({k})", f"{n} in {sec:.0f} s (inside the budget)")
            for k, (n, sec) in r.get("self_labelled", {}).items()
        ),
        ("predicted with", f"{len(r['snapshots'])} snapshot(s) x flip TTA"),
        (
            "training tiles/s",
            f"{r['steady_tiles_s']:.1f} in steady steps, {r['overall_tiles_s']:.1f} per epoch",
        ),
        ("achieved GFLOP/s", achieved),
        ("load average", "before {} {} {}, after {} {} {}".format(*r["load"])),
    ]
    lines = ["| what | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget")
    parser.add_argument(
        "--epochs",
        help="no budget: fixed epochs per phase, comma-separated (e.g. 15,20)",
    )
    parser.add_argument("--data", help="TGS folder (default: $TGS_DATA)")
    parser.add_argument("--work", help="weights folder (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument(
        "--score-only",
        action="store_true",
        help="do not train: score the finished run in --work again",
    )
    args = parser.parse_args(argv)
    if args.score_only and not args.work:
        parser.error("--score-only needs --work (the finished run's folder)")
    try:
        epochs = [int(x) for x in args.epochs.split(",")] if args.epochs else None
    except ValueError:
        parser.error(f"--epochs: comma-separated whole numbers, got {args.epochs!r}")
    data = args.data or os.environ.get("TGS_DATA")
    if not data or not Path(data).is_dir():
        print("cpu_budget: needs the real data (--data DIR or TGS_DATA)", file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="cpu_budget-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        r = run(args.minutes, Path(data), work, score_only=args.score_only, epochs=epochs)
    finally:
        if not args.work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    print(table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
