"""Synthetic seismic tiles in the Kaggle TGS Salt Identification format.

Each tile is a small 2-D seismic section: a layered sedimentary impedance model
(random layer thicknesses, dip, folds, wedges, occasional faults) with, in about 61%
of the train tiles, a salt body (a domed top of salt, a keel at the top of the tile,
a vertical or steep flank, or irregular blobs).  Salt has a high, nearly constant
impedance with a weak chaotic texture, so its top is a bright reflection while its
interior is weak and incoherent.  The impedance is turned into reflectivity along
depth and convolved with a Ricker wavelet, band-limited noise is added and the
amplitudes are mapped to uint8 with a per-tile gain and offset, like real TGS data.

:func:`generate_dataset` writes a complete TGS-format directory (train/test images,
16-bit masks, ``train.csv``, ``depths.csv``, ``sample_submission.csv``) plus
``test_truth.csv``, the hidden labels of the test tiles (not a Kaggle file: it lets the
demo score its test predictions); the output depends only on the seed, not on the
number of worker processes.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from saltseg import TILE
from saltseg.core.atomic import atomic_path, atomic_write_text
from saltseg.core.rle import encode

PAD = 24
TEST_TRUTH_CSV = "test_truth.csv"
"""Rows of margin above and below the tile, so that the wavelet has support at the edges."""

_H = TILE + 2 * PAD
_Y, _X = np.mgrid[-PAD : TILE + PAD, 0:TILE].astype(np.float32)

KINDS: dict[str, float] = {
    "empty": 0.375,
    "bottom": 0.25,
    "top": 0.11,
    "blob": 0.11,
    "flank": 0.04,
    "vertical": 0.04,
    "near_full": 0.06,
}
"""Salt geometry kinds and their probabilities when :func:`make_tile` draws one."""

_KIND_NAMES = list(KINDS)
_KIND_P = np.array(list(KINDS.values())) / sum(KINDS.values())


# --------------------------------------------------------------------------- helpers


def _ricker(rng: np.random.Generator) -> np.ndarray:
    """A Ricker wavelet with a dominant wavelength of 6-12 px, as a column kernel."""
    wavelength = rng.uniform(6.0, 12.0)
    half = min(PAD, math.ceil(1.6 * wavelength))
    t = np.arange(-half, half + 1, dtype=np.float32) / wavelength
    a = (np.pi * t) ** 2
    w = (1.0 - 2.0 * a) * np.exp(-a)
    return (w / np.abs(w).sum()).astype(np.float32).reshape(-1, 1)


def _smooth_field(rng: np.random.Generator, cells_y: int, cells_x: int) -> np.ndarray:
    """A smooth zero-mean random field on the canvas (bicubic upsampling of a coarse grid)."""
    coarse = rng.standard_normal((cells_y, cells_x), dtype=np.float32)
    field = cv2.resize(coarse, (TILE, _H), interpolation=cv2.INTER_CUBIC)
    field -= field.mean()
    return field / (field.std() + 1e-6)


def _smooth_1d(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """A smooth zero-mean 1-D random curve of length ``n`` with unit std."""
    coarse = rng.standard_normal((1, cells), dtype=np.float32)
    curve = cv2.resize(coarse, (n, 1), interpolation=cv2.INTER_CUBIC)[0]
    curve -= curve.mean()
    return curve / (curve.std() + 1e-6)


def _blurred_noise(rng: np.random.Generator, sx: float, sy: float) -> np.ndarray:
    """Gaussian white noise smoothed with an anisotropic Gaussian, unit std."""
    noise = rng.standard_normal((_H, TILE), dtype=np.float32)
    out = cv2.GaussianBlur(noise, (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)
    return out / (out.std() + 1e-6)


def _sediment_log_impedance(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Layered log-impedance sampled at stratigraphic depth ``t`` (same shape as ``t``)."""
    t_min = float(t.min()) - 2.0
    t_max = float(t.max()) + 2.0
    span = t_max - t_min
    mean_thick = rng.uniform(2.0, 6.0)
    n_layers = int(span / mean_thick * 2.0) + 8
    thick = rng.gamma(1.6, mean_thick / 1.6, n_layers) + 0.6
    bounds = t_min + np.cumsum(thick)
    # Layer values: a mix of white and correlated parts, plus a few strong beds.
    white = rng.standard_normal(n_layers)
    corr = np.convolve(rng.standard_normal(n_layers + 6), np.ones(7) / 7.0, mode="valid")
    values = rng.uniform(0.05, 0.10) * (0.75 * white + 1.2 * corr)
    strong = rng.random(n_layers) < rng.uniform(0.03, 0.12)
    values[strong] += rng.choice([-1.0, 1.0], strong.sum()) * rng.uniform(0.1, 0.25, strong.sum())
    grid = np.arange(t_min, t_max, 0.25)
    fine = values[np.minimum(np.searchsorted(bounds, grid), n_layers - 1)]
    fine = np.convolve(np.pad(fine, 2, mode="edge"), np.array([1, 2, 3, 2, 1]) / 9.0, "valid")
    return np.interp(t, grid, fine).astype(np.float32)


def _stratigraphic_depth(rng: np.random.Generator) -> np.ndarray:
    """Depth coordinate of the layering: dip, wedge, folds, bumps and maybe a fault."""
    x = _X[0]
    dip = rng.normal(0.0, 0.12)
    wedge = rng.uniform(-0.25, 0.25)
    fold = np.zeros(TILE, dtype=np.float32)
    for _ in range(rng.integers(1, 4)):
        wl = rng.uniform(60.0, 400.0)
        fold += rng.uniform(0.0, 9.0) * np.sin(2 * np.pi * x / wl + rng.uniform(0, 2 * np.pi))
    for _ in range(rng.integers(0, 3)):
        c, w = rng.uniform(-20, 120), rng.uniform(12, 45)
        fold += rng.uniform(-7.0, 7.0) * np.exp(-(((x - c) / w) ** 2))
    growth = 1.0 + rng.uniform(-0.6, 0.6) * (_Y / TILE)
    t = _Y * (1.0 + wedge * (_X - 50.0) / 100.0) + dip * _X + growth * fold[None, :]
    t += 1.2 * _smooth_field(rng, 4, 4)  # gentle lateral thickness changes
    if rng.random() < 0.25:
        x0 = rng.uniform(10, 90)
        slope = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.2)
        throw = rng.choice([-1.0, 1.0]) * rng.uniform(3.0, 12.0)
        t += throw * (x0 + slope * (_Y - 50.0) < _X)
    return t


def _coverage_target(rng: np.random.Generator, kind: str) -> float:
    """Target salt fraction of the tile for a non-empty ``kind``."""
    if kind == "near_full":
        return rng.uniform(0.905, 0.995)
    if rng.random() < 0.3:
        return rng.uniform(0.004, 0.1)
    return rng.uniform(0.1, 0.9)


def _salt_level_field(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A smooth field whose upper level sets are salt bodies of the given geometry."""
    x = _X[0]
    if kind in ("bottom", "top"):
        xc = rng.uniform(-30.0, 130.0)
        power = rng.uniform(1.3, 4.0)
        height = rng.uniform(5.0, 90.0) * rng.choice([1.0, 1.0, -1.0])
        curve = height * (np.abs(x - xc) / 50.0) ** power + rng.normal(0, 0.15) * x
        curve += rng.uniform(0.0, 4.0) * _smooth_1d(rng, TILE, int(rng.integers(4, 9)))
        phi = _Y - curve[None, :]
        phi += rng.uniform(0.0, 3.0) * _smooth_field(rng, 5, 5)
        return phi if kind == "bottom" else -phi
    if kind == "flank":
        slope = rng.uniform(-0.6, 0.6)
        wiggle = rng.uniform(0.0, 5.0) * _smooth_1d(rng, _H, int(rng.integers(3, 7)))
        phi = _X - slope * (_Y - 50.0) - wiggle[:, None]
        return phi if rng.random() < 0.5 else -phi
    # blob
    cy, cx = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    return _smooth_field(rng, cy + 1, cx) + 0.15 * _smooth_field(rng, 2 * cy + 3, 2 * cx + 1)


def _salt_mask(rng: np.random.Generator, kind: str) -> np.ndarray:
    """Boolean salt mask on the padded canvas for a non-empty ``kind``."""
    target = _coverage_target(rng, kind)
    if kind == "vertical":
        ncols = int(np.clip(round(target * TILE), 1, TILE - 1))
        cols = np.arange(TILE) < ncols
        if rng.random() < 0.5:
            cols = cols[::-1]
        return np.broadcast_to(cols, (_H, TILE)).copy()
    if kind == "near_full":
        kind = str(rng.choice(["bottom", "top", "blob", "flank"], p=[0.45, 0.3, 0.1, 0.15]))
    phi = _salt_level_field(rng, kind)
    tile = phi[PAD : PAD + TILE]
    level = np.quantile(tile, 1.0 - target)
    mask = phi > level
    inner = mask[PAD : PAD + TILE]
    if inner.all():  # never a completely full tile
        mask[PAD : PAD + TILE][tile <= tile.min()] = False
    if not inner.any():
        mask[PAD : PAD + TILE][tile >= tile.max()] = True
    return mask


def _to_uint8(rng: np.random.Generator, amp: np.ndarray) -> np.ndarray:
    """Map unit-scale amplitudes to uint8 with a per-tile gain, offset and mild gamma."""
    offset = rng.uniform(100.0, 142.0)
    gain = rng.uniform(24.0, 44.0)
    img = np.clip(offset + gain * amp, 0.0, 255.0) / 255.0
    img = 255.0 * img ** rng.uniform(0.85, 1.15)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _render(
    rng: np.random.Generator, kind: str, salt_contrast: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Render one tile of the given kind; see :func:`make_tile`."""
    if kind == "black":
        value = 0 if rng.random() < 0.7 else int(rng.integers(1, 256))
        return np.full((TILE, TILE), value, np.uint8), np.zeros((TILE, TILE), bool)

    wavelet = _ricker(rng)
    t = _stratigraphic_depth(rng)
    salt = None if kind == "empty" else _salt_mask(rng, kind)

    if salt is not None:
        # Drag: sediments bend upwards next to the salt body.
        dist = cv2.distanceTransform((~salt).astype(np.uint8), cv2.DIST_L2, 3)
        t = t + rng.uniform(2.0, 12.0) * np.exp(-dist / rng.uniform(4.0, 18.0))

    log_imp = _sediment_log_impedance(rng, t)
    # Lateral amplitude variation of the sediments.
    lateral = 1.0 + rng.uniform(0.1, 0.4) * _smooth_field(rng, 3, int(rng.integers(3, 7)))
    sed_refl = np.diff(log_imp, axis=0, append=log_imp[-1:]) * np.maximum(lateral, 0.25)

    if salt is None:
        refl = sed_refl
    else:
        soft = cv2.GaussianBlur(salt.astype(np.float32), (0, 0), 0.8)
        chaos = _blurred_noise(rng, rng.uniform(1.0, 3.0), rng.uniform(0.6, 1.2))
        top = float(np.percentile(log_imp, 90))
        salt_imp = top + rng.uniform(0.25, 0.55) + rng.uniform(0.01, 0.035) * chaos
        # Contrast against the sediment impedance at the same place: the top of salt is bright.
        combined = log_imp * (1.0 - soft) + salt_imp * soft
        refl = np.diff(combined, axis=0, append=combined[-1:])
        refl *= np.maximum(lateral, 0.25) * (1.0 - soft) + soft

    ref_scale = float(cv2.filter2D(sed_refl, -1, wavelet, borderType=cv2.BORDER_REFLECT).std())
    seis = cv2.filter2D(refl, -1, wavelet, borderType=cv2.BORDER_REFLECT)
    seis = cv2.GaussianBlur(seis, (0, 0), sigmaX=rng.uniform(0.5, 1.5), sigmaY=0.1)
    seis /= ref_scale + 1e-9
    seis *= np.exp(rng.uniform(-0.8, 0.4) * _Y / TILE)  # amplitude varies with depth

    noise = cv2.filter2D(
        _blurred_noise(rng, rng.uniform(0.8, 2.5), 0.5), -1, wavelet, borderType=cv2.BORDER_REFLECT
    )
    # salt_contrast c in [0, 1] scales the noise down (x 1 - c/2) and darkens the salt more;
    # the bounds move, the random draws do not, so c = 0 renders exactly the default tiles.
    seis += rng.uniform(0.08, 0.4) * (1.0 - 0.5 * salt_contrast) * noise / (noise.std() + 1e-6)
    if salt is not None:
        # Salt is often a little darker after processing.
        seis -= rng.uniform(-0.1 + 0.5 * salt_contrast, 0.35 + 0.45 * salt_contrast) * soft

    tile = seis[PAD : PAD + TILE]
    image = _to_uint8(rng, tile)
    mask = np.zeros((TILE, TILE), bool) if salt is None else salt[PAD : PAD + TILE].copy()
    return image, mask


def make_tile(
    rng: np.random.Generator, coverage_kind: str | None = None, salt_contrast: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 (101,101), mask bool (101,101)) pair.

    ``coverage_kind`` is one of :data:`KINDS` or ``"black"``; ``None`` draws a kind with the
    probabilities of :data:`KINDS` (about 39% empty masks, like the real train set).
    ``salt_contrast`` (0-1, default 0: as hard as the defaults make it) makes the salt
    clearly darker than the sediments and the noise weaker: data that small networks
    trained for minutes can learn (the demo's).
    """
    if not 0.0 <= salt_contrast <= 1.0:
        raise ValueError(f"salt_contrast must be in [0, 1], got {salt_contrast}")
    if coverage_kind is None:
        coverage_kind = str(_KIND_NAMES[rng.choice(len(_KIND_NAMES), p=_KIND_P)])
    if coverage_kind != "black" and coverage_kind not in KINDS:
        raise ValueError(f"unknown coverage_kind {coverage_kind!r}; use one of {[*KINDS, 'black']}")
    return _render(rng, coverage_kind, salt_contrast)


# --------------------------------------------------------------------------- dataset


_Job = tuple[np.random.SeedSequence, bool, str, str | None, float]


def _write_tile(job: _Job) -> tuple[str, float]:
    """Render one tile from its seed and write its PNGs; return (RLE, coverage)."""
    seed_seq, black, image_path, mask_path, salt_contrast = job
    rng = np.random.default_rng(seed_seq)
    image, mask = make_tile(rng, "black" if black else None, salt_contrast)
    with atomic_path(image_path, durable=False) as tmp:
        if not cv2.imwrite(str(tmp), cv2.merge([image, image, image])):
            raise OSError(f"could not write {image_path}")
    if mask_path is None:  # a test tile: its mask goes to the hidden test_truth.csv only
        return encode(mask), float(mask.mean())
    with atomic_path(mask_path, durable=False) as tmp:
        if not cv2.imwrite(str(tmp), mask.astype(np.uint16) * np.uint16(65535)):
            raise OSError(f"could not write {mask_path}")
    return encode(mask), float(mask.mean())


def _unique_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct 10-character lowercase hex ids."""
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        for v in rng.integers(0, 16**10, size=n - len(out), dtype=np.int64):
            s = f"{int(v):010x}"
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def _n_black(n: int, fraction: float) -> int:
    """Number of black tiles among ``n`` (rounded half up)."""
    return min(n, math.floor(n * fraction + 0.5)) if fraction > 0 else 0


def generate_dataset(
    out_dir: Path,
    n_train: int,
    n_test: int,
    seed: int = 0,
    black_fraction: float = 0.025,
    workers: int | None = None,
    salt_contrast: float = 0.0,
) -> dict:
    """Write a complete Kaggle TGS-format directory; return a summary dict.

    The summary has keys n_train, n_test, n_black (train + test), n_black_train,
    n_black_test, empty_fraction (train), mean_coverage (train), near_full_fraction
    (train, coverage > 90%), seconds and tiles_per_s.
    """
    if n_train < 0 or n_test < 0:
        raise ValueError("n_train and n_test must be >= 0")
    if not 0.0 <= black_fraction <= 1.0:
        raise ValueError("black_fraction must be in [0, 1]")
    if not 0.0 <= salt_contrast <= 1.0:
        raise ValueError("salt_contrast must be in [0, 1]")
    out_dir = Path(out_dir)
    start = time.perf_counter()
    root = np.random.SeedSequence(seed)
    meta_seq, tiles_seq = root.spawn(2)
    meta = np.random.default_rng(meta_seq)
    tile_seeds = tiles_seq.spawn(n_train + n_test)

    ids = _unique_ids(meta, n_train + n_test)
    train_ids, test_ids = ids[:n_train], ids[n_train:]
    black = np.zeros(n_train + n_test, bool)
    black[meta.permutation(n_train)[: _n_black(n_train, black_fraction)]] = True
    black[n_train + meta.permutation(n_test)[: _n_black(n_test, black_fraction)]] = True

    for sub in ("train/images", "train/masks", "test/images"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    jobs: list[_Job] = []
    for i, tid in enumerate(ids):
        if i < n_train:
            img_p, mask_p = out_dir / "train/images", str(out_dir / "train/masks" / f"{tid}.png")
        else:
            img_p, mask_p = out_dir / "test/images", None
        jobs.append(
            (tile_seeds[i], bool(black[i]), str(img_p / f"{tid}.png"), mask_p, salt_contrast)
        )

    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if workers <= 1 or len(jobs) < 64:
        results = [_write_tile(j) for j in jobs]
    else:
        chunk = max(8, len(jobs) // (workers * 8))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_write_tile, jobs, chunksize=chunk))

    rles = [r for r, _ in results[:n_train]]
    cov = np.array([c for _, c in results[:n_train]], dtype=float)
    order = meta.permutation(n_train)
    atomic_write_text(
        out_dir / "train.csv",
        "id,rle_mask\n" + "".join(f"{train_ids[k]},{rles[k]}\n" for k in order),
    )
    z = np.clip(np.rint(meta.normal(506.0, 200.0, len(ids))), 50, 960).astype(int)
    atomic_write_text(
        out_dir / "depths.csv",
        "id,z\n" + "".join(f"{ids[k]},{z[k]}\n" for k in meta.permutation(len(ids))),
    )
    atomic_write_text(
        out_dir / TEST_TRUTH_CSV,
        "id,rle_mask\n"
        + "".join(f"{tid},{r}\n" for tid, (r, _) in zip(test_ids, results[n_train:], strict=True)),
    )
    atomic_write_text(
        out_dir / "sample_submission.csv",
        "id,rle_mask\n" + "".join(f"{tid},1 1\n" for tid in test_ids),
    )
    seconds = time.perf_counter() - start
    return {
        "out_dir": str(out_dir),
        "seed": seed,
        "salt_contrast": salt_contrast,
        "n_train": n_train,
        "n_test": n_test,
        "n_black": int(black.sum()),
        "n_black_train": int(black[:n_train].sum()),
        "n_black_test": int(black[n_train:].sum()),
        "empty_fraction": float((cov == 0).mean()) if n_train else 0.0,
        "mean_coverage": float(cov.mean()) if n_train else 0.0,
        "near_full_fraction": float((cov > 0.9).mean()) if n_train else 0.0,
        "seconds": seconds,
        "tiles_per_s": (n_train + n_test) / seconds if seconds > 0 else float("inf"),
    }


# --------------------------------------------------------------------------- volumes


def _smooth_3d(rng: np.random.Generator, shape: tuple[int, ...], cells: int) -> np.ndarray:
    """A smooth zero-mean random field of ``shape`` with unit std (cubic zoom of a coarse grid)."""
    from scipy import ndimage

    coarse = rng.standard_normal((cells,) * len(shape)).astype(np.float32)
    field = ndimage.zoom(coarse, [n / cells for n in shape], order=3, mode="nearest")
    field = field[tuple(slice(0, n) for n in shape)]
    field -= field.mean()
    return field / (field.std() + 1e-6)


def make_volume(
    seed: int, n_il: int, n_xl: int, n_samples: int, amplitude: float = 1000.0
) -> tuple[np.ndarray, np.ndarray]:
    """A 3D seismic volume with one salt dome: amplitudes float32 and salt bool, both
    ``(inlines, crosslines, samples)``.

    The tiles' recipe in three dimensions, with one pixel per trace and per sample: layered
    sediments (:func:`_sediment_log_impedance` on a dipping, folded depth field, dragged up
    against the salt), a salt body below a domed top-of-salt surface with a weak chaotic
    texture, reflectivity along depth convolved with a Ricker wavelet (:func:`_ricker`),
    band-limited noise, and amplitudes in arbitrary units (``amplitude``), not grey levels.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(
        np.arange(n_il, dtype=np.float32),
        np.arange(n_xl, dtype=np.float32),
        np.arange(-PAD, n_samples + PAD, dtype=np.float32),
        indexing="ij",
    )
    shape = x.shape
    wavelet = _ricker(rng)[:, 0]
    fold = rng.uniform(2.0, 8.0) * _smooth_3d(rng, shape[:2], 4)[..., None]
    t = z + rng.normal(0, 0.1) * x + rng.normal(0, 0.1) * y + fold
    t += 1.2 * _smooth_3d(rng, shape, 5)
    # Top of salt: a dome (centre and radii drawn in the volume), wrinkled.
    cx, cy = rng.uniform(0.3, 0.7) * n_il, rng.uniform(0.3, 0.7) * n_xl
    rx, ry = rng.uniform(0.25, 0.45) * n_il, rng.uniform(0.25, 0.45) * n_xl
    r = np.sqrt(((x[..., :1] - cx) / rx) ** 2 + ((y[..., :1] - cy) / ry) ** 2)
    top = n_samples * (rng.uniform(0.25, 0.45) + 0.5 * r ** rng.uniform(1.5, 2.5))
    top += rng.uniform(1.0, 4.0) * _smooth_3d(rng, shape[:2], 6)[..., None]
    salt = z > top
    above = np.clip(top - z, 0.0, None)
    t = t + rng.uniform(2.0, 10.0) * np.exp(-above / rng.uniform(4.0, 15.0)) * ~salt
    log_imp = _sediment_log_impedance(rng, t)
    lateral = np.maximum(1.0 + rng.uniform(0.1, 0.4) * _smooth_3d(rng, shape, 4), 0.25)
    sed_refl = np.diff(log_imp, axis=2, append=log_imp[..., -1:]) * lateral
    soft = ndimage.gaussian_filter(salt.astype(np.float32), 0.8)
    chaos = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (2, 2, 0.8))
    chaos /= chaos.std() + 1e-6
    salt_imp = float(np.percentile(log_imp, 90)) + rng.uniform(0.25, 0.55)
    combined = log_imp * (1.0 - soft) + (salt_imp + rng.uniform(0.01, 0.035) * chaos) * soft
    refl = np.diff(combined, axis=2, append=combined[..., -1:]) * (lateral * (1.0 - soft) + soft)
    ref_scale = float(ndimage.convolve1d(sed_refl, wavelet, axis=2, mode="reflect").std())
    seis = ndimage.convolve1d(refl, wavelet, axis=2, mode="reflect")
    seis = ndimage.gaussian_filter(seis, (0.8, 0.8, 0)) / (ref_scale + 1e-9)
    seis *= np.exp(rng.uniform(-0.8, 0.4) * z / n_samples)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (1.5, 1.5, 0.5))
    noise = ndimage.convolve1d(noise, wavelet, axis=2, mode="reflect")
    seis += rng.uniform(0.08, 0.3) * noise / (noise.std() + 1e-6)
    seis -= rng.uniform(0.0, 0.3) * soft
    inner = slice(PAD, PAD + n_samples)
    return (amplitude * seis[..., inner]).astype(np.float32), salt[..., inner].copy()


# --------------------------------------------------------------------------- preview
