"""Reusable plots (matplotlib, Agg canvas only: no display and no global backend change)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from saltseg.atomic import atomic_path

OUTLINE_COLOUR = "#39ff14"
"""Bright green for mask outlines, visible on grey seismic."""


def sample_grid(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    ids: Sequence[str],
    out_png: Path,
    ncols: int = 8,
    title: str | None = None,
) -> Path:
    """Save a grid of grey tiles with the mask outlines drawn; return ``out_png``.

    ``images`` are 2-D (or 3-D with identical channels) uint8 arrays, ``masks`` boolean
    arrays of the same size or ``None``; ``ids`` become small subplot titles.
    """
    if not len(images) == len(masks) == len(ids):
        raise ValueError("images, masks and ids must have the same length")
    n = len(images)
    ncols = max(1, min(ncols, n)) if n else 1
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(1.5 * ncols, 1.6 * nrows + (0.3 if title else 0.0)), dpi=100)
    FigureCanvasAgg(fig)
    for k in range(nrows * ncols):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        ax.set_axis_off()
        if k >= n:
            continue
        img = np.asarray(images[k])
        if img.ndim == 3:
            img = img[..., 0]
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        mask = masks[k]
        if mask is not None:
            m = np.asarray(mask).astype(np.float32)
            if 0.0 < m.mean() < 1.0:
                ax.contour(m, levels=[0.5], colors=OUTLINE_COLOUR, linewidths=0.8)
            elif m.mean() == 1.0:  # full mask: frame the tile
                ax.contour(np.pad(m, 1), levels=[0.5], colors=OUTLINE_COLOUR, linewidths=0.8)
        ax.set_title(str(ids[k]), fontsize=6, pad=2)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format=out_png.suffix.lstrip(".") or "png")
    return out_png
