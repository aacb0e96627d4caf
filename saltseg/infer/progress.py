"""The progress bar of every prediction: tiles done and tiles/s, on stderr.

It appears only after a few seconds (short predictions stay quiet) and not at all when
stderr is not a terminal, so logs and tests are not filled with bars.
"""

from __future__ import annotations

import sys
from typing import Any

SHOW_AFTER_S = 3.0


def tile_bar(total: int, desc: str, initial: int = 0, unit: str = "tile") -> Any:
    """A tqdm bar over ``total`` tiles (``unit``: what is counted), as a context manager."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=None,
        delay=SHOW_AFTER_S,
        smoothing=0.1,
        dynamic_ncols=True,
    )


class TileCounter:
    """Fractions of tiles (one network's share of a chunk) added up into whole ticks of
    ``bar``."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.done = 0.0

    def __call__(self, tiles: float) -> None:
        before = int(self.done)
        self.done += tiles
        self.bar.update(int(self.done + 1e-6) - before)
