"""The phalanx pseudo-label rule.

Confidence >= 0.97 and not black, binned by mask size: every 2nd empty mask; masks of
1-19 pixels never; 20-500 pixels need confidence >= 0.99; larger masks up to 90% coverage.
Each bin is shuffled (seeded) and dealt round-robin into the folds, so every fold gets the
same mix (the original cut each bin into 5 fixed-size slices; about 8.3k tiles, ~1.6k per
fold). The fold column adds a tile to that fold's training only.
"""

from __future__ import annotations

import numpy as np

from saltseg import TILE


def phalanx_bins(pixels: np.ndarray) -> np.ndarray:
    """Size bin of each mask: 0 empty, 1 (1-19 px, never used), 2 20-500, 3 <= 1/4,
    4 <= 1/2, 5 <= 3/4, 6 < 90%, 7 >= 90% (never used)."""
    n = TILE * TILE
    edges = [0, 19, 500, n / 4, n / 2, 3 * n / 4]
    bins = np.digitize(pixels, edges, right=True)
    bins[(pixels > 3 * n / 4) & (pixels < 0.9 * n)] = 6
    bins[pixels >= 0.9 * n] = 7
    return bins


# The original's fixed slice sizes per fold (folds 0-3; fold 4 takes the rest), per bin:
# empty, 20-500 px, to 1/4, to 1/2, to 3/4, to 90% (phalanx/make_pseudo.py).
ORIGINAL_SLICES: dict[int, int] = {0: 600, 2: 110, 3: 300, 4: 240, 5: 200, 6: 130}


def phalanx_choice(
    conf: np.ndarray,
    pixels: np.ndarray,
    black: np.ndarray,
    min_conf: float = 0.97,
    small_conf: float = 0.99,
) -> tuple[np.ndarray, np.ndarray]:
    """Which tiles the phalanx rule keeps, and every tile's size bin; ids must be sorted."""
    bins = phalanx_bins(pixels)
    ok = (conf >= min_conf) & ~black & (bins != 1) & (bins != 7)
    ok &= (bins != 2) | (conf >= small_conf)
    empty = np.flatnonzero(ok & (bins == 0))
    ok[empty[1::2]] = False  # every 2nd empty mask
    return ok, bins


def select_phalanx(
    conf: np.ndarray,
    pixels: np.ndarray,
    black: np.ndarray,
    n_folds: int = 5,
    seed: int = 0,
    min_conf: float = 0.97,
    small_conf: float = 0.99,
) -> tuple[np.ndarray, np.ndarray]:
    """Chosen tiles and their fold (-1 when not chosen), each bin dealt evenly."""
    ok, bins = phalanx_choice(conf, pixels, black, min_conf, small_conf)
    folds = np.full(len(conf), -1, dtype=int)
    rng = np.random.default_rng(seed)
    for b in np.unique(bins[ok]):
        members = rng.permutation(np.flatnonzero(ok & (bins == b)))
        folds[members] = np.arange(len(members)) % n_folds
    return ok, folds


def select_phalanx_slices(
    conf: np.ndarray, pixels: np.ndarray, black: np.ndarray, n_folds: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """The same tiles, cut as the original did: in (sorted) id order, each bin's first
    :data:`ORIGINAL_SLICES` tiles go to fold 0, the next to fold 1, ..., the last fold
    takes the rest (about 1,580/1,580/1,600/1,580/1,962 tiles on the competition data)."""
    ok, bins = phalanx_choice(conf, pixels, black)
    folds = np.full(len(conf), -1, dtype=int)
    for b, size in ORIGINAL_SLICES.items():
        members = np.flatnonzero(ok & (bins == b))
        folds[members] = np.minimum(np.arange(len(members)) // size, n_folds - 1)
    return ok, folds


def phalanx_slices_rule(
    conf: np.ndarray, pixels: np.ndarray, black: np.ndarray, n_folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The registered ``phalanx_slices`` rule (the full profile's; see above)."""
    return select_phalanx_slices(conf, pixels, black, n_folds)


def phalanx_rule(
    conf: np.ndarray, pixels: np.ndarray, black: np.ndarray, n_folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The registered ``phalanx`` rule (see :mod:`saltseg.post.pseudo`)."""
    return select_phalanx(conf, pixels, black, n_folds, seed)
