"""The original's final prediction computed by hand from the original-format files (no
import, no weight files of ours): each network assigned straight from its file, b.e.s. folders
2_2 x3, 2_3/2_4/2_5 x1 over fold means, phalanx snapshot means then fold means, min-max
normalised, blended 0.5/0.5, threshold 0.5, black tiles empty (as stored: uint8 steps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from original_fakes import BES_FOLDERS, PHALANX_SNAPSHOTS

from bes.weights_map import source_of as bes_source
from phalanx.weights_map import source_of as phalanx_source
from saltseg.data.adapters import get_adapter
from saltseg.data.probs import dequantize, quantize
from saltseg.data.tiles import ids_from_folder, is_black, read_images
from saltseg.data.weights_io import read_weights
from saltseg.infer.networks import build_model, predict_probabilities
from saltseg.nets.transfer import transfer
from saltseg.nets.zoo import get_model_spec


def _probs(spec_name: str, path: Path, images: np.ndarray, source_of, convention: str, model):
    spec = get_model_spec(spec_name)
    transfer(model, read_weights(path), source_of, convention, path)
    return predict_probabilities(model, images, get_adapter(spec.adapter), None, logits=True)


def original_prediction(
    orig: Path, images_dir: Path, bes: str = "bes-tiny", phalanx: str = "phalanx-v5-tiny"
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Masks by id, and where the blend is within 3 uint8 steps of the threshold."""
    ids = ids_from_folder(images_dir)
    images = read_images([images_dir / f"{i}.png" for i in ids])
    model = build_model(get_model_spec(bes))
    weights = {"2_2": 3.0, "2_3": 1.0, "2_4": 1.0, "2_5": 1.0}
    p_bes = np.zeros(images.shape, np.float64)
    for folder in BES_FOLDERS:
        root = orig / "bes/weights" / f"unet_resnext_50_lovasz_stage_{folder}"
        fold_mean = np.mean(
            [
                _probs(bes, root / f"fold_{k}.hdf5", images, bes_source, "keras2", model)
                for k in range(5)
            ],
            axis=0,
        )
        p_bes += weights[folder] / sum(weights.values()) * fold_mean
    model = build_model(get_model_spec(phalanx))
    folds = []
    for k, n in PHALANX_SNAPSHOTS.items():
        snaps = [
            _probs(phalanx, orig / f"phalanx/weights/model_128_res34v5{k}{s}.pth", images,
                   phalanx_source, "torch", model)
            for s in range(n)
        ]  # fmt: skip
        folds.append(np.mean(snaps, axis=0))
    p_pha = dequantize(quantize(np.mean(folds, axis=0)))
    p_pha = (p_pha - p_pha.min()) / (p_pha.max() - p_pha.min())
    blend = 0.5 * dequantize(quantize(p_bes)) + 0.5 * p_pha
    masks = dequantize(quantize(blend)) > 0.5
    masks[is_black(images)] = False
    ambiguous = np.abs(blend - 0.5) < 3 / 255
    return dict(zip(ids, masks, strict=True)), dict(zip(ids, ambiguous, strict=True))
