"""``saltseg eda``: what a TGS folder holds, as figures and a short Markdown summary.

Outputs (default ``reports/eda/``)::

    summary.md          tiles, black tiles, depths and pixel statistics per split; empty
                        masks, coverage classes and quantiles of the labelled tiles
    summary.json        the same numbers
    eda_samples.png     labelled tiles across the coverage range, mask outlined
    eda_coverage.png    tiles per coverage class, histogram of the non-empty coverage
    eda_depth.png       depth histogram per split, share of tiles with salt by depth
    eda_images.png      per-tile mean and standard deviation of the grey values per split

A folder without test images or without ``depths.csv`` still works: those parts are
left out and the summary says so.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from saltseg.data.folds import COVERAGE_LABELS, coverage_class

if TYPE_CHECKING:
    from saltseg.data.tiles import TGSDirectory, TrainSet

DEFAULT_OUT = Path("reports/eda")
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
# --------------------------------------------------------------------------- numbers


def coverage_counts(pixels: np.ndarray, total: int) -> np.ndarray:
    """Tiles per coverage class, ``(11,)``."""
    return np.bincount(coverage_class(pixels, total), minlength=len(COVERAGE_LABELS))


def pixel_stats(
    images: np.ndarray, chunk: int = 1024
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(pixel mean, pixel std over all pixels, per-tile means, per-tile stds), chunked.

    Sums are exact integers, so 18,000 tiles never need a float copy of the stack.
    """
    n = len(images)
    if n == 0:
        return float("nan"), float("nan"), np.empty(0), np.empty(0)
    s1 = np.zeros(n, np.int64)
    s2 = np.zeros(n, np.int64)
    for lo in range(0, n, chunk):
        block = images[lo : lo + chunk].reshape(min(chunk, n - lo), -1).astype(np.int64)
        s1[lo : lo + chunk] = block.sum(axis=1)
        s2[lo : lo + chunk] = (block * block).sum(axis=1)
    per_tile = images[0].size
    mean = int(s1.sum()) / (n * per_tile)
    var = int(s2.sum()) / (n * per_tile) - mean * mean
    tile_mean = s1 / per_tile
    tile_std = np.sqrt(np.maximum(s2 / per_tile - tile_mean**2, 0.0))
    return mean, float(np.sqrt(max(var, 0.0))), tile_mean, tile_std


@dataclass
class SplitStats:
    """Numbers of one split (train or test)."""

    name: str
    tiles: int
    black: int
    with_depth: int
    depth_min: float
    depth_max: float
    depth_mean: float
    pixel_mean: float
    pixel_std: float


@dataclass
class MaskStats:
    """Numbers of the labelled masks."""

    tiles: int
    empty: int
    black_with_salt: int
    mean_coverage: float
    coverage_counts: list[int]
    quantiles_all: list[float]
    quantiles_nonempty: list[float]


@dataclass
class EdaResult:
    """Everything the summary reports, plus the arrays the figures need."""

    root: str
    splits: list[SplitStats]
    masks: MaskStats
    notes: list[str] = field(default_factory=list)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def numbers(self) -> dict[str, Any]:
        """JSON-ready numbers (no arrays)."""
        return {
            "root": self.root,
            "splits": [asdict(s) for s in self.splits],
            "masks": asdict(self.masks),
            "notes": self.notes,
        }


def split_stats(name: str, images: np.ndarray, depths: np.ndarray) -> tuple[SplitStats, dict]:
    """Statistics of one split and its per-tile arrays (tile_mean, tile_std, depth)."""
    from saltseg.data.tiles import is_black

    mean, std, tile_mean, tile_std = pixel_stats(images)
    known = depths[np.isfinite(depths)]
    has = known.size > 0
    stats = SplitStats(
        name=name,
        tiles=len(images),
        black=int(is_black(images).sum()) if len(images) else 0,
        with_depth=int(known.size),
        depth_min=float(known.min()) if has else float("nan"),
        depth_max=float(known.max()) if has else float("nan"),
        depth_mean=float(known.mean()) if has else float("nan"),
        pixel_mean=mean,
        pixel_std=std,
    )
    return stats, {"tile_mean": tile_mean, "tile_std": tile_std, "depth": depths}


def mask_stats(train: TrainSet) -> MaskStats:
    """Empty masks, coverage classes and quantiles of the labelled tiles."""
    total = train.masks[0].size if len(train) else 1
    pixels = train.masks.reshape(len(train), -1).sum(axis=1)
    cov = pixels / total
    nonempty = cov[cov > 0]
    q = np.asarray(QUANTILES)
    return MaskStats(
        tiles=len(train),
        empty=int((pixels == 0).sum()),
        black_with_salt=int((train.black & (pixels > 0)).sum()),
        mean_coverage=float(cov.mean()) if cov.size else float("nan"),
        coverage_counts=[int(c) for c in coverage_counts(pixels, total)],
        quantiles_all=[float(v) for v in np.quantile(cov, q)] if cov.size else [],
        quantiles_nonempty=[float(v) for v in np.quantile(nonempty, q)] if nonempty.size else [],
    )


def _depths_for(data: TGSDirectory, notes: list[str]) -> Any:
    if not data.depths_csv.is_file():
        notes.append(f"no {data.depths_csv.name}: depths left out")
        return None
    return data.depths()


def analyse(data: TGSDirectory, with_test: bool = True) -> tuple[EdaResult, TrainSet]:
    """Load a TGS folder and compute every number of the summary."""
    notes: list[str] = []
    train = data.load_train(verify_rle=False)
    z = _depths_for(data, notes)
    train_z = train.depths if z is not None else np.full(len(train), np.nan)
    stats, arrays = split_stats("train", train.images, train_z)
    arrays["coverage"] = train.coverage
    splits, all_arrays = [stats], {"train": arrays}
    if with_test and data.test_images_dir.is_dir():
        test = data.load_test()
        test_z = (
            z.reindex(test.ids).to_numpy(np.float64)
            if z is not None
            else np.full(len(test), np.nan)
        )
        t_stats, all_arrays["test"] = split_stats("test", test.images, test_z)
        splits.append(t_stats)
    elif with_test:
        notes.append(f"no {data.test_images_dir}: test split left out")
    for s in splits:
        if z is not None and s.with_depth < s.tiles:
            notes.append(f"{s.tiles - s.with_depth} {s.name} tile(s) without a depth")
    result = EdaResult(str(data.root), splits, mask_stats(train), notes, all_arrays)
    return result, train


# --------------------------------------------------------------------------- figures


def pick_samples(coverage: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of about ``n`` tiles: a quarter empty, the rest spread over the coverage range.

    Sorted by coverage, so the grid reads from empty to full.
    """
    rng = np.random.default_rng(seed)
    empty = np.flatnonzero(coverage == 0)
    salty = np.flatnonzero(coverage > 0)
    n = min(n, len(coverage))
    n_empty = min(len(empty), max(n - len(salty), n // 4))
    n_salty = min(len(salty), n - n_empty)
    picks = list(rng.choice(empty, n_empty, replace=False)) if n_empty else []
    if n_salty:
        ranked = salty[np.argsort(coverage[salty], kind="stable")]
        picks += list(ranked[np.linspace(0, len(ranked) - 1, n_salty).round().astype(int)])
    picks_arr = np.unique(np.asarray(picks, dtype=np.int64))
    return picks_arr[np.argsort(coverage[picks_arr], kind="stable")]


def plot_samples(
    train: TrainSet, out_png: Path, n: int = 24, seed: int = 0, dpi: int | None = None
) -> Path:
    """Grid of labelled tiles (mask outlined) across the coverage range."""
    from saltseg.report.plots import DPI, sample_grid

    idx = pick_samples(train.coverage, n, seed)
    titles = [f"{train.ids[i][:10]} {train.coverage[i]:.0%}" for i in idx]
    title = f"{len(idx)} labelled tiles by salt coverage (green: mask outline)"
    return sample_grid(
        [train.images[i] for i in idx],
        [train.masks[i] for i in idx],
        titles,
        out_png,
        title=title,
        dpi=dpi or DPI,
    )


def plot_coverage(result: EdaResult, out_png: Path, dpi: int | None = None) -> Path:
    """Tiles per coverage class and the histogram of non-empty coverage."""
    from saltseg.report.plots import bar_chart, label_axes, new_figure, save_figure

    counts = result.masks.coverage_counts
    cov = result.arrays["train"]["coverage"]
    fig = new_figure(10, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    bar_chart(ax1, COVERAGE_LABELS, counts, [str(c) for c in counts])
    label_axes(ax1, "salt coverage class", "tiles", f"{result.masks.tiles} labelled tiles")
    ax2.hist(cov[cov > 0] * 100, bins=np.linspace(0, 100, 51), color="#4c72b0")
    label_axes(ax2, "salt coverage (%)", "tiles", f"non-empty masks ({int((cov > 0).sum())})")
    fig.tight_layout()
    return save_figure(fig, out_png, dpi)


def plot_depth(result: EdaResult, out_png: Path, dpi: int | None = None) -> Path | None:
    """Depth histogram per split and the share of labelled tiles with salt by depth."""
    from saltseg.report.plots import bar_chart, histograms, label_axes, new_figure, save_figure

    depth = {name: a["depth"] for name, a in result.arrays.items()}
    finite = np.concatenate([d[np.isfinite(d)] for d in depth.values()])
    if finite.size == 0:
        return None
    edges = np.linspace(finite.min(), finite.max() + 1e-9, 21)
    fig = new_figure(10, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    histograms(ax1, {f"{k} ({np.isfinite(v).sum()})": v for k, v in depth.items()}, edges)
    label_axes(ax1, "depth z", "tiles", "depth per split")
    z, cov = depth["train"], result.arrays["train"]["coverage"]
    ok = np.isfinite(z)
    which = np.clip(np.digitize(z[ok], edges) - 1, 0, len(edges) - 2)
    n = np.bincount(which, minlength=len(edges) - 1)
    salty = np.bincount(which, weights=(cov[ok] > 0).astype(float), minlength=len(edges) - 1)
    share = np.where(n > 0, salty / np.maximum(n, 1), np.nan)
    labels = [f"{edges[k]:.0f}" for k in range(len(edges) - 1)]
    bar_chart(ax2, labels, share * 100, [str(c) if c else "" for c in n])
    label_axes(ax2, "depth bin start z", "tiles with salt (%)", "train: salt by depth")
    fig.tight_layout()
    return save_figure(fig, out_png, dpi)


def plot_images(result: EdaResult, out_png: Path, dpi: int | None = None) -> Path:
    """Per-tile mean and standard deviation of the grey values, per split."""
    from saltseg.report.plots import histograms, label_axes, new_figure, save_figure

    fig = new_figure(10, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    bins = np.linspace(0, 255, 52)
    histograms(ax1, {k: a["tile_mean"] for k, a in result.arrays.items()}, bins, density=True)
    label_axes(ax1, "tile mean grey value", "density", "brightness per tile")
    histograms(ax2, {k: a["tile_std"] for k, a in result.arrays.items()}, 50, density=True)
    label_axes(ax2, "tile grey-value std", "density", "contrast per tile")
    fig.tight_layout()
    return save_figure(fig, out_png, dpi)


# --------------------------------------------------------------------------- Markdown


def _pct(n: int, of: int) -> str:
    return f"{n:,} ({n / of:.1%})" if of else f"{n:,}"


def summary_markdown(result: EdaResult, figures: list[Path]) -> str:
    """The Markdown summary: tables of the numbers, then the figures."""
    from saltseg.report.plots import fmt, markdown_table

    m = result.masks
    split_rows = [
        [
            s.name,
            s.tiles,
            s.black,
            s.with_depth,
            fmt(s.depth_min, 0),
            fmt(s.depth_max, 0),
            fmt(s.depth_mean, 1),
            fmt(s.pixel_mean, 2),
            fmt(s.pixel_std, 2),
        ]
        for s in result.splits
    ]
    heads = ["split", "tiles", "black", "with depth", "depth min", "depth max", "depth mean"]
    lines = [
        f"# EDA of `{result.root}`",
        "",
        "## Tiles",
        "",
        markdown_table([*heads, "pixel mean", "pixel std"], split_rows, [False] + [True] * 8),
        "",
        "## Masks (train)",
        "",
        f"- labelled tiles: {m.tiles:,}",
        f"- empty masks: {_pct(m.empty, m.tiles)}",
        f"- black tiles with salt: {m.black_with_salt:,}",
        f"- mean coverage: {fmt(m.mean_coverage)}",
        "",
        markdown_table(
            ["coverage", "tiles", "share"],
            [
                [label, c, f"{c / m.tiles:.1%}" if m.tiles else "-"]
                for label, c in zip(COVERAGE_LABELS, m.coverage_counts, strict=True)
            ],
            [False, True, True],
        ),
        "",
        "Coverage quantiles (salt share of the tile):",
        "",
        markdown_table(
            ["quantile", "all tiles", "non-empty"],
            [
                [f"q{q:g}", _at(m.quantiles_all, k), _at(m.quantiles_nonempty, k)]
                for k, q in enumerate(QUANTILES)
            ],
            [False, True, True],
        ),
    ]
    if result.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in result.notes]]
    lines += ["", "## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in figures]
    return "\n".join(lines) + "\n"


def _at(values: list[float], k: int) -> str:
    from saltseg.report.plots import fmt

    return fmt(values[k]) if k < len(values) else "-"


# --------------------------------------------------------------------------- command


def add_dpi_argument(parser: argparse.ArgumentParser) -> None:
    """``--dpi`` of the saved figures (shared by eda, report and review)."""
    parser.add_argument(
        "--dpi",
        type=int,
        default=None,
        help="resolution of the PNGs (default 100; lower for smaller files)",
    )


def run_eda(
    data_dir: Path,
    out: Path,
    n_samples: int = 24,
    seed: int = 0,
    with_test: bool = True,
    dpi: int | None = None,
) -> EdaResult:
    """Analyse ``data_dir`` and write the figures and summaries into ``out``."""
    from saltseg.core.atomic import atomic_write_text
    from saltseg.data.tiles import TGSDirectory

    result, train = analyse(TGSDirectory(data_dir), with_test)
    out.mkdir(parents=True, exist_ok=True)
    figures = [
        plot_samples(train, out / "eda_samples.png", n_samples, seed, dpi),
        plot_coverage(result, out / "eda_coverage.png", dpi),
    ]
    depth_png = plot_depth(result, out / "eda_depth.png", dpi)
    figures += [depth_png] if depth_png else []
    figures.append(plot_images(result, out / "eda_images.png", dpi))
    atomic_write_text(out / "summary.md", summary_markdown(result, figures))
    atomic_write_text(out / "summary.json", json.dumps(result.numbers(), indent=1) + "\n")
    return result


def cmd_eda(args: argparse.Namespace) -> int:
    """``saltseg eda``: figures and a Markdown summary of a TGS folder."""
    from saltseg.config.settings import data_dir_for

    data_dir = data_dir_for(args.data, args.settings)
    out = Path(args.out)
    result = run_eda(data_dir, out, args.samples, args.seed, not args.skip_test, args.dpi)
    for s in result.splits:
        print(f"{s.name}: {s.tiles} tiles, {s.black} black")
    m = result.masks
    print(f"empty masks: {_pct(m.empty, m.tiles)}; mean coverage {m.mean_coverage:.4f}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {out / 'summary.md'}")
    return 0


def add_eda_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``eda`` sub-command."""
    p = subparsers.add_parser(
        "eda",
        help="figures and a Markdown summary of a TGS data folder",
        description="Sample grid, coverage, depth and image statistics of a TGS folder.",
    )
    p.add_argument("data", nargs="?", help="TGS data folder (default: DATA_DIR of the settings)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--samples", type=int, default=24, help="tiles in the sample grid")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample choice")
    p.add_argument("--skip-test", action="store_true", help="do not read test/images")
    add_dpi_argument(p)
    p.set_defaults(func=cmd_eda)
    return p
