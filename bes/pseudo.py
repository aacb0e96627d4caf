"""The b.e.s. pseudo-label rule: confidence >= 0.9 and not black (about 15.5k of the
18k test tiles in the original); no fold column."""

from __future__ import annotations

import numpy as np


def select_bes(conf: np.ndarray, black: np.ndarray, min_conf: float = 0.9) -> np.ndarray:
    """Tiles the b.e.s. rule keeps."""
    return (conf >= min_conf) & ~black


def bes_rule(
    conf: np.ndarray, pixels: np.ndarray, black: np.ndarray, n_folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, None]:
    """The registered ``bes`` rule (see :mod:`saltseg.post.pseudo`)."""
    return select_bes(conf, black), None
