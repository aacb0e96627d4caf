"""Reusable plots (matplotlib, Agg canvas only: no display and no global backend change).

Shared by ``saltseg eda``, ``saltseg report`` and ``saltseg review``: figure creation and
atomic saving, tiles with mask outlines, bar charts, histograms, and the Markdown tables
that accompany the figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Patch

from saltseg import TILE
from saltseg.core.atomic import atomic_path

OUTLINE_COLOUR = "#39ff14"
"""Bright green for mask outlines, visible on grey seismic."""
TRUTH_COLOUR = OUTLINE_COLOUR
"""Ground-truth outlines."""
PRED_COLOUR = "#ff2fd0"
"""Predicted-mask outlines (magenta, distinct from the truth's green)."""
DPI = 100
"""Default resolution of saved figures."""


# --------------------------------------------------------------------------- figures


def new_figure(width: float, height: float, dpi: int = DPI) -> Figure:
    """A figure bound to an Agg canvas (never a display)."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_png: str | Path, dpi: int | None = None) -> Path:
    """Save ``fig`` atomically (format from the suffix, PNG by default); return the path."""
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=dpi or fig.dpi)
    return out


# --------------------------------------------------------------------------- tiles


@dataclass
class Tile:
    """One tile to draw: a grey image, outlines ``(mask, colour)`` and a small title."""

    image: np.ndarray | None
    outlines: list[tuple[np.ndarray | None, str]] = field(default_factory=list)
    title: str = ""


def draw_outline(ax: Axes, mask: np.ndarray, colour: str, linewidth: float = 0.8) -> None:
    """Outline a boolean mask on an image axis (a full mask frames the tile)."""
    m = np.asarray(mask, dtype=np.float32)
    if not m.any():
        return
    # Zero padding closes contours that touch the border; coordinates stay pixel centres.
    padded = np.pad(m, 1)
    ys = np.arange(-1, m.shape[0] + 1)
    xs = np.arange(-1, m.shape[1] + 1)
    ax.contour(xs, ys, padded, levels=[0.5], colors=colour, linewidths=linewidth)


def draw_tile(ax: Axes, tile: Tile, size: int = TILE) -> None:
    """Draw a grey tile (mid-grey when the image is unknown) with its outlines."""
    img = np.full((size, size), 128, np.uint8) if tile.image is None else np.asarray(tile.image)
    if img.ndim == 3:
        img = img[..., 0]
    ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    for mask, colour in tile.outlines:
        if mask is not None:
            draw_outline(ax, mask, colour)
    ax.set_xlim(-0.5, img.shape[1] - 0.5)
    ax.set_ylim(img.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    if tile.title:
        ax.set_title(tile.title, fontsize=6, pad=2)


def grid_shape(n: int, ncols: int) -> tuple[int, int]:
    """(rows, columns) of a grid holding ``n`` tiles at most ``ncols`` wide."""
    ncols = max(1, min(ncols, n)) if n else 1
    return max(1, math.ceil(n / ncols)), ncols


def fill_tile_grid(target: Figure | SubFigure, tiles: Sequence[Tile], ncols: int) -> None:
    """Lay ``tiles`` out row by row on a figure or sub-figure."""
    nrows, ncols = grid_shape(len(tiles), ncols)
    for k in range(nrows * ncols):
        ax = target.add_subplot(nrows, ncols, k + 1)
        if k < len(tiles):
            draw_tile(ax, tiles[k])
        else:
            ax.set_axis_off()


def colour_legend(target: Figure | SubFigure, items: Sequence[tuple[str, str]]) -> None:
    """A legend of coloured patches ``(label, colour)`` along the bottom of ``target``."""
    handles = [Patch(facecolor="none", edgecolor=c, linewidth=1.5, label=s) for s, c in items]
    target.legend(handles=handles, loc="lower center", ncols=len(handles), fontsize=7)


def sample_grid(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    ids: Sequence[str],
    out_png: Path,
    ncols: int = 8,
    title: str | None = None,
    dpi: int = DPI,
) -> Path:
    """Save a grid of grey tiles with the mask outlines drawn; return ``out_png``.

    ``images`` are 2-D (or 3-D with identical channels) uint8 arrays, ``masks`` boolean
    arrays of the same size or ``None``; ``ids`` become small subplot titles.
    """
    if not len(images) == len(masks) == len(ids):
        raise ValueError("images, masks and ids must have the same length")
    tiles = [
        Tile(img, [(m, OUTLINE_COLOUR)], str(tid))
        for img, m, tid in zip(images, masks, ids, strict=True)
    ]
    nrows, ncols = grid_shape(len(tiles), ncols)
    fig = new_figure(1.5 * ncols, 1.6 * nrows + (0.3 if title else 0.0), dpi)
    fill_tile_grid(fig, tiles, ncols)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_png)


# --------------------------------------------------------------------------- charts


def label_axes(ax: Axes, xlabel: str, ylabel: str, title: str) -> None:
    """Set both axis labels and the title (every chart axis is labelled)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


def bar_chart(
    ax: Axes,
    labels: Sequence[str],
    values: Sequence[float],
    annotations: Sequence[str] | None = None,
    colour: str = "#4c72b0",
) -> None:
    """Vertical bars, one per label, with an optional text above each bar (NaN: no bar)."""
    x = np.arange(len(labels))
    vals = np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)
    ax.bar(x, vals, color=colour)
    ax.set_xticks(x, list(labels), rotation=45, ha="right", fontsize=7)
    for xi, v, text in zip(x, vals, annotations or [""] * len(labels), strict=True):
        if text:
            ax.annotate(
                text, (xi, v), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=6
            )
    ax.margins(y=0.12)


def histograms(
    ax: Axes, series: dict[str, np.ndarray], bins: int | np.ndarray, density: bool = False
) -> None:
    """Overlaid step histograms, one per named series (empty series are skipped)."""
    drawn = False
    for name, values in series.items():
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if v.size:
            ax.hist(v, bins=bins, histtype="step", linewidth=1.3, density=density, label=name)
            drawn = True
    if drawn and len(series) > 1:
        ax.legend(fontsize=7)


# --------------------------------------------------------------------------- Markdown


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a Markdown table: ints with separators, floats rounded, NaN as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return "-" if not math.isfinite(float(value)) else f"{float(value):.{digits}f}"
    return str(value)


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool] | None = None
) -> str:
    """A GitHub Markdown table; cells go through :func:`fmt`, numbers align right."""
    if right is None:
        first = rows[0] if rows else [""] * len(headers)
        right = [isinstance(c, int | float | np.integer | np.floating) for c in first]
    sep = ["---:" if r else "---" for r in right]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save_preview(data_dir: Path, out_png: Path, n: int = 24, seed: int = 0) -> Path:
    """Grid of train samples from a TGS-format dir: image with the mask outline drawn.

    Picks ``n`` ids at random (with ``seed``) from the sorted ids of ``train.csv``, about
    half with salt and half without when both are available.
    """
    data_dir = Path(data_dir)
    lines = (data_dir / "train.csv").read_text(encoding="utf-8").splitlines()[1:]
    rows = sorted(tuple(line.split(",", 1)) for line in lines if line.strip())
    salty = [i for i, r in rows if r.strip()]
    empty = [i for i, r in rows if not r.strip()]
    rng = np.random.default_rng(seed)
    n = min(n, len(rows))
    n_salty = min(len(salty), max(n - len(empty), (n + 1) // 2))
    picked = list(rng.choice(salty, n_salty, replace=False)) if n_salty else []
    picked += list(rng.choice(empty, n - n_salty, replace=False)) if n > n_salty else []
    picked = [str(picked[k]) for k in rng.permutation(len(picked))]
    images, masks = [], []
    for tid in picked:
        img = cv2.imread(str(data_dir / "train/images" / f"{tid}.png"), cv2.IMREAD_UNCHANGED)
        msk = cv2.imread(str(data_dir / "train/masks" / f"{tid}.png"), cv2.IMREAD_UNCHANGED)
        if img is None or msk is None:
            raise FileNotFoundError(f"missing image or mask PNG for id {tid} in {data_dir}")
        images.append(img[..., 0] if img.ndim == 3 else img)
        masks.append(msk > 0)
    return sample_grid(images, masks, picked, Path(out_png), title=f"{data_dir.name}: {n} train")
