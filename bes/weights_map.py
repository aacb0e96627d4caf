"""The original b.e.s. weights onto :func:`bes.model.build_bes` (``saltseg weights import``).

The published files are Keras 2.2 ``save_weights`` HDF5 files of ``unet_resnext_50_lovasz``,
``bes/weights/unet_resnext_50_lovasz_stage_2_{2,3,4,5}/fold_{0..4}.hdf5``. Our layer names
follow the original's, except:

- ``stage{s}_unit{u}_conv2``: one grouped conv for the original's 32 per-group convs
  ``stage{s}_unit{u}_conv2_{0..31}`` (their kernels concatenated on the output channels);
- the decoder scSE ``decoder_stage{i}_scse_{cse_fc1, cse_fc2, sse_conv}`` is the original's
  ``csse_block_{i}cse_lin1``, ``csse_block_{i}cse_lin2``, ``csse_block_{i}_conv``.

In prediction, the original weighted the four stage-2 folders 2_2 (the fine-tuned model) x3
and 2_3, 2_4, 2_5 (the cosine snapshots) x1 each; they go to our stage-2 layout
(``finetune/best``, ``snapshots/snapshot_{1,2,3}``) of the ``original`` recipe.
"""

from __future__ import annotations

import re
from pathlib import Path

from saltseg.core.errors import DataError
from saltseg.nets.transfer import OriginalFile, OriginalWeights, family_folder

CARDINALITY = 32
FOLDS = (0, 1, 2, 3, 4)
# folder suffix -> (our phase, slot, weight in the fold's mean)
FOLDERS: dict[str, tuple[str, str, float]] = {
    "2_2": ("finetune", "best", 3.0),
    "2_3": ("snapshots", "snapshot_1", 1.0),
    "2_4": ("snapshots", "snapshot_2", 1.0),
    "2_5": ("snapshots", "snapshot_3", 1.0),
}
_SCSE = {"cse_fc1": "{}cse_lin1", "cse_fc2": "{}cse_lin2", "sse_conv": "{}_conv"}


def source_of(name: str) -> str | tuple[str, ...] | None:
    """Our layer -> the original Keras 2 layer(s)."""
    if re.fullmatch(r"stage\d+_unit\d+_conv2", name):
        return tuple(f"{name}_{c}" for c in range(CARDINALITY))
    m = re.fullmatch(r"decoder_stage(\d+)_scse_(cse_fc1|cse_fc2|sse_conv)", name)
    if m:
        return _SCSE[m[2]].format(f"csse_block_{m[1]}")
    return name


def files(original: Path) -> list[OriginalFile]:
    """The 20 published files (a :class:`DataError` names a missing folder or fold)."""
    root = family_folder(original, "bes")
    out: list[OriginalFile] = []
    for suffix, (phase, slot, weight) in FOLDERS.items():
        folder = root / f"unet_resnext_50_lovasz_stage_{suffix}"
        if not folder.is_dir():
            raise DataError(f"{folder}: b.e.s. stage {suffix} folder missing")
        for k in FOLDS:
            path = folder / f"fold_{k}.hdf5"
            if not path.is_file():
                raise DataError(f"{path}: b.e.s. stage {suffix} fold {k} missing")
            out.append(OriginalFile(path, k, phase, slot, weight, f"stage_{suffix}"))
    return out


ORIGINAL = OriginalWeights(
    family="bes",
    recipe="original",
    convention="keras2",
    source_of=source_of,
    files=files,
    variants={"gated": "original"},
    default_variant="gated",
    description="Keras 2 HDF5, unet_resnext_50_lovasz, 4 stage-2 folders x 5 folds",
)
