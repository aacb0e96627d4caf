"""``saltseg review``: where a prediction wins and loses, against labelled masks.

Two inputs, both compared with a truth RLE CSV (``train.csv`` by default)::

    saltseg review PRED_CSV --truth TRUTH_CSV          an RLE prediction CSV
    saltseg review --probs FILE.h5 --truth TRUTH_CSV   a saltseg.data.probs file (e.g. out-of-fold)

The prediction's ids must be a subset of the truth ids (only those tiles are reviewed); an
id without a label is an error naming it. With probabilities the threshold curve is drawn
and the masks use the best threshold on these tiles (or ``--threshold``).

Outputs (default ``reports/review/<prediction name>/``)::

    review.md              scores, per-coverage-class table, threshold, figures
    scores.csv             id, score, truth and predicted pixels, coverage class
    review_overlays.png    worst and best tiles: truth outline green, prediction magenta
    review_coverage.png    mean score and lost score per coverage class
    review_threshold.png   score against probability threshold (probabilities only)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.core.errors import ConfigError, DataError
from saltseg.data.folds import COVERAGE_LABELS, coverage_class
from saltseg.report.eda import add_dpi_argument

DEFAULT_OUT = Path("reports/review")


@dataclass
class Review:
    """Truth and predicted masks of the reviewed tiles (sorted ids), with their scores."""

    source: str
    ids: list[str]
    truth: np.ndarray
    pred: np.ndarray
    scores: np.ndarray
    threshold: float | None = None
    curve: tuple[np.ndarray, np.ndarray] | None = None
    score_at_half: float | None = None
    n_truth: int = 0
    """Ids in the truth CSV (the reviewed ids are a subset)."""

    @property
    def truth_pixels(self) -> np.ndarray:
        return self.truth.reshape(len(self.ids), -1).sum(axis=1)

    @property
    def pred_pixels(self) -> np.ndarray:
        return self.pred.reshape(len(self.ids), -1).sum(axis=1)

    @property
    def classes(self) -> np.ndarray:
        return coverage_class(self.truth_pixels, self.truth[0].size)

    @property
    def wrong_pixels(self) -> np.ndarray:
        return (self.truth ^ self.pred).reshape(len(self.ids), -1).sum(axis=1)


# --------------------------------------------------------------------------- inputs


def check_subset(pred_ids: list[str], truth_ids: list[str], pred_name: str, truth_name: str):
    """Raise :class:`DataError` naming the prediction ids that have no truth."""
    known = set(truth_ids)
    missing = sorted(i for i in pred_ids if i not in known)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(
            f"{pred_name}: {len(missing)} of {len(pred_ids)} id(s) are not in {truth_name} "
            f"({shown}); the prediction ids must be a subset of the truth ids"
        )


def _truth_for(truth_csv: Path, ids: list[str], pred_name: str) -> tuple[np.ndarray, int]:
    """Truth masks of ``ids`` (in that order) from an RLE CSV, and the CSV's id count."""
    from saltseg.data.submission import read_rle_csv

    t_ids, t_masks = read_rle_csv(truth_csv)
    check_subset(ids, t_ids, pred_name, str(truth_csv))
    pos = {tid: i for i, tid in enumerate(t_ids)}
    return t_masks[[pos[i] for i in ids]], len(t_ids)


def review_csv(pred_csv: Path, truth_csv: Path) -> Review:
    """Review an RLE prediction CSV."""
    from saltseg.core import metric
    from saltseg.data.submission import read_rle_csv

    p_ids, p_masks = read_rle_csv(pred_csv)
    order = np.argsort(np.asarray(p_ids, dtype=object), kind="stable")
    ids = [p_ids[i] for i in order]
    truth, n_truth = _truth_for(truth_csv, ids, str(pred_csv))
    pred = p_masks[order]
    scores = metric.image_scores(truth, pred)
    return Review(str(pred_csv), ids, truth, pred, scores, n_truth=n_truth)


def review_probs(probs_h5: Path, truth_csv: Path, threshold: float | None = None) -> Review:
    """Review a probability file: threshold curve, then masks at the chosen threshold."""
    from saltseg.core import metric
    from saltseg.data.probs import read_probs

    maps = read_probs(probs_h5)
    truth, n_truth = _truth_for(truth_csv, maps.ids, str(probs_h5))
    prob = maps.float()
    thresholds = np.round(np.arange(0.05, 0.96, 0.01), 4)
    best, _, curve = metric.best_threshold(truth, prob, thresholds)
    chosen = best if threshold is None else float(threshold)
    pred = prob > chosen
    return Review(
        str(probs_h5),
        list(maps.ids),
        truth,
        pred,
        metric.image_scores(truth, pred),
        threshold=chosen,
        curve=(thresholds, curve),
        score_at_half=metric.score(truth, prob > 0.5),
        n_truth=n_truth,
    )


def load_images(data_dir: Path | None, ids: list[str]) -> tuple[dict[str, np.ndarray], str | None]:
    """Images of ``ids`` from a TGS folder (train, else test images); a note instead when
    some are missing."""
    from saltseg.data.tiles import read_image

    if data_dir is None:
        return {}, "no data folder: tiles drawn on grey"
    folders = [Path(data_dir) / "train" / "images", Path(data_dir) / "test" / "images"]
    found = {}
    for i in ids:
        path = next((f / f"{i}.png" for f in folders if (f / f"{i}.png").is_file()), None)
        if path is None:
            where = " or ".join(str(f) for f in folders)
            return {}, f"image {i}.png missing in {where}: drawn on grey"
        found[i] = path
    return {i: read_image(p) for i, p in found.items()}, None


# --------------------------------------------------------------------------- selection


def worst_and_best(review: Review, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` worst tiles and the ``k`` best tiles with salt in the truth.

    Worst: lowest score, then most wrong pixels. Best: highest score, then coverage closest
    to half the tile, where the boundary is longest (tiles with salt only, when there are
    any: empty-and-empty tiles are trivially perfect).
    """
    ids = np.asarray(review.ids)
    worst = np.lexsort((ids, -review.wrong_pixels, review.scores))[:k]
    salty = np.flatnonzero(review.truth_pixels > 0)
    pool = salty if salty.size else np.arange(len(ids))
    half = np.abs(review.truth_pixels[pool] / review.truth[0].size - 0.5)
    best = pool[np.lexsort((ids[pool], half, -review.scores[pool]))][:k]
    return worst, best


def coverage_rows(review: Review) -> list[list[Any]]:
    """Per truth-coverage class: tiles, mean score, empty predictions, share of lost score."""
    n = len(review.ids)
    cls = review.classes
    pred_empty = review.pred_pixels == 0
    rows = []
    for c, label in enumerate(COVERAGE_LABELS):
        sel = cls == c
        m = int(sel.sum())
        mean = float(review.scores[sel].mean()) if m else float("nan")
        lost = float((1.0 - review.scores[sel]).sum() / n) if n else float("nan")
        rows.append([label, m, mean, int(pred_empty[sel].sum()), lost])
    total_lost = float((1.0 - review.scores).sum() / n) if n else float("nan")
    mean_all = float(review.scores.mean()) if n else float("nan")
    rows.append(["all", n, mean_all, int(pred_empty.sum()), total_lost])
    return rows


# --------------------------------------------------------------------------- figures


def plot_overlays(
    review: Review, images: dict[str, np.ndarray], out_png: Path, k: int = 8, dpi: int | None = None
) -> Path:
    """Worst and best tiles: image, truth outline and prediction outline."""
    from saltseg.report.plots import (
        PRED_COLOUR,
        TRUTH_COLOUR,
        Tile,
        colour_legend,
        fill_tile_grid,
        grid_shape,
        new_figure,
        save_figure,
    )

    worst, best = worst_and_best(review, k)
    cov = review.truth_pixels / review.truth[0].size
    ncols = min(8, max(len(worst), len(best), 1))

    def tiles(idx: np.ndarray) -> list[Tile]:
        return [
            Tile(
                images.get(review.ids[i]),
                [(review.truth[i], TRUTH_COLOUR), (review.pred[i], PRED_COLOUR)],
                f"{review.ids[i][:10]}\nscore {review.scores[i]:.2f}, salt {cov[i]:.0%}",
            )
            for i in idx
        ]

    rows = [grid_shape(len(worst), ncols)[0], grid_shape(len(best), ncols)[0]]
    fig = new_figure(1.3 * ncols, 1.6 * sum(rows) + 1.0)
    top, bottom = fig.subfigures(2, 1, height_ratios=[rows[0], rows[1] + 0.3])
    for sub, idx, what in ((top, worst, "worst"), (bottom, best, "best")):
        fill_tile_grid(sub, tiles(idx), ncols)
        sub.suptitle(f"{what} {len(idx)} tiles", fontsize=9)
        sub.subplots_adjust(left=0.01, right=0.99, top=0.8, bottom=0.12 if sub is bottom else 0.02)
    colour_legend(bottom, [("truth", TRUTH_COLOUR), ("prediction", PRED_COLOUR)])
    return save_figure(fig, out_png, dpi)


def plot_coverage_scores(review: Review, out_png: Path, dpi: int | None = None) -> Path:
    """Mean score and share of lost score per truth-coverage class (bar charts)."""
    from saltseg.report.plots import bar_chart, label_axes, new_figure, save_figure

    rows = coverage_rows(review)[:-1]
    labels = [r[0] for r in rows]
    fig = new_figure(10, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    bar_chart(ax1, labels, [r[2] for r in rows], [f"n={r[1]}" if r[1] else "" for r in rows])
    label_axes(ax1, "truth salt coverage", "mean score", "score per coverage class")
    lost = [100 * r[4] for r in rows]
    bar_chart(ax2, labels, lost, [f"{v:.1f}" if v else "" for v in lost], colour="#c44e52")
    label_axes(ax2, "truth salt coverage", "score lost (% of all tiles)", "where points are lost")
    fig.tight_layout()
    return save_figure(fig, out_png, dpi)


def plot_threshold(review: Review, out_png: Path, dpi: int | None = None) -> Path:
    """Score against probability threshold, the chosen threshold marked."""
    from saltseg.report.plots import label_axes, new_figure, save_figure

    assert review.curve is not None and review.threshold is not None
    thresholds, scores = review.curve
    fig = new_figure(5.5, 3.6)
    ax = fig.subplots()
    ax.plot(thresholds, scores, color="#4c72b0", linewidth=1.3)
    ax.axvline(review.threshold, color="#c44e52", linestyle="--", linewidth=1)
    ax.annotate(
        f"{review.threshold:.2f}: {review.scores.mean():.4f}",
        (review.threshold, float(review.scores.mean())),
        xytext=(5, -12),
        textcoords="offset points",
        fontsize=8,
    )
    label_axes(
        ax, "probability threshold", "mean score", f"threshold curve ({len(review.ids)} tiles)"
    )
    fig.tight_layout()
    return save_figure(fig, out_png, dpi)


# --------------------------------------------------------------------------- Markdown


def summary_markdown(review: Review, figures: list[Path], notes: list[str]) -> str:
    """Headline numbers, the per-class table and the figures."""
    from saltseg.report.plots import fmt, markdown_table

    truth_empty = review.truth_pixels == 0
    lines = [
        f"# Review of `{review.source}`",
        "",
        f"- tiles reviewed: {len(review.ids):,} (of {review.n_truth:,} truth ids)",
        f"- score: {fmt(float(review.scores.mean()))}",
        f"- empty in truth: {int(truth_empty.sum()):,}; empty in prediction: "
        f"{int((review.pred_pixels == 0).sum()):,}",
    ]
    if review.threshold is not None:
        lines += [
            f"- threshold: {review.threshold:.2f} (best on these tiles, unless given)",
            f"- score at threshold 0.50: {fmt(review.score_at_half)}",
        ]
    table = markdown_table(
        ["truth coverage", "tiles", "mean score", "predicted empty", "score lost"],
        coverage_rows(review),
        [False, True, True, True, True],
    )
    lines += ["", "## Score per coverage class", "", table, ""]
    lines += [
        "`score lost`: the class's share of 1 - score, over all tiles (sums to 1 - score).",
        "",
    ]
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    lines += ["## Figures", "", *[f"![{p.stem}]({p.name})" for p in figures]]
    return "\n".join(lines) + "\n"


def write_scores(review: Review, path: Path) -> None:
    """Per-tile scores as CSV (atomic)."""
    import pandas as pd

    from saltseg.core.atomic import atomic_open

    df = pd.DataFrame(
        {
            "id": review.ids,
            "score": review.scores,
            "truth_pixels": review.truth_pixels,
            "pred_pixels": review.pred_pixels,
            "coverage_class": [COVERAGE_LABELS[c] for c in review.classes],
        }
    )
    with atomic_open(path, "w", newline="") as fh:
        df.to_csv(fh, index=False, float_format="%.4f")


# --------------------------------------------------------------------------- command


def write_review(
    review: Review, data_dir: Path | None, out: Path, k: int = 8, dpi: int | None = None
) -> list[Path]:
    """Write every figure, ``scores.csv`` and ``review.md`` into ``out``; return the figures."""
    from saltseg.core.atomic import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    worst, best = worst_and_best(review, k)
    shown = [review.ids[i] for i in np.unique(np.concatenate([worst, best]))]
    images, note = load_images(data_dir, shown)
    figures = [
        plot_overlays(review, images, out / "review_overlays.png", k, dpi),
        plot_coverage_scores(review, out / "review_coverage.png", dpi),
    ]
    if review.curve is not None:
        figures.append(plot_threshold(review, out / "review_threshold.png", dpi))
    write_scores(review, out / "scores.csv")
    atomic_write_text(out / "review.md", summary_markdown(review, figures, [note] if note else []))
    return figures


def cmd_review(args: argparse.Namespace) -> int:
    """``saltseg review``: overlays, per-coverage scores and the threshold curve."""
    from saltseg.config.settings import data_dir_for

    if bool(args.pred_csv) == bool(args.probs):
        raise ConfigError("give either PRED_CSV or --probs FILE.h5 (exactly one)")
    data_dir = data_dir_for(args.data, args.settings)
    truth = Path(args.truth) if args.truth else data_dir / "train.csv"
    src = Path(args.pred_csv or args.probs)
    review = review_probs(src, truth, args.threshold) if args.probs else review_csv(src, truth)
    out = Path(args.out) if args.out else DEFAULT_OUT / src.name.split(".")[0]
    write_review(review, data_dir, out, args.n, args.dpi)
    print(f"reviewed {len(review.ids)} tiles of {src} against {truth}")
    if review.threshold is not None:
        print(f"threshold {review.threshold:.2f} (score at 0.50: {review.score_at_half:.6f})")
    print(f"wrote {out / 'review.md'}")
    print(f"score: {review.scores.mean():.6f}")
    return 0


def add_review_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``review`` sub-command."""
    p = subparsers.add_parser(
        "review",
        help="review a prediction against labels: overlays, per-coverage scores",
        description="Worst and best tiles, score per salt-coverage class and (with "
        "probabilities) the threshold curve. Prediction ids must be truth ids.",
    )
    p.add_argument("pred_csv", nargs="?", help="prediction RLE CSV (id,rle_mask)")
    p.add_argument("--probs", metavar="H5", help="a saltseg probability file instead of a CSV")
    p.add_argument("--truth", metavar="CSV", help="labels RLE CSV (default: DATA/train.csv)")
    p.add_argument("--data", help="TGS folder with the images (default: DATA_DIR of settings)")
    p.add_argument("--threshold", type=float, help="probability threshold (default: best)")
    p.add_argument("--n", type=int, default=8, help="worst and best tiles shown (default 8)")
    p.add_argument("--out", help=f"output folder (default {DEFAULT_OUT}/<prediction name>)")
    add_dpi_argument(p)
    p.set_defaults(func=cmd_review)
    return p
