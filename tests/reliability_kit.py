"""Small fixtures for the reliability corpus: a project folder with tiles, fake trained
weights and settings, a network stand-in (no Keras model is built or trained), the command
line run in-process, and byte snapshots of output folders."""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from saltseg.cli.main import main
from saltseg.config.settings import write_settings

N_TILES = 6


@dataclass
class Project:
    root: Path
    settings: Path
    tiles: Path
    weights: Path  # phalanx/stage1 (tiny profile: fold 0, phase "cycles", 5 snapshots)
    predictions: Path

    @property
    def probs(self) -> Path:
        return self.predictions / "probs" / "test" / "phalanx_stage1.h5"

    def predict_args(self, *extra: str) -> list[str]:
        return [
            "--settings",
            str(self.settings),
            "predict",
            "--family",
            "phalanx",
            "--stage",
            "stage1",
            "--profile",
            "tiny",
            "--images",
            str(self.tiles),
            *extra,
        ]


def write_tile(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 256, size=(101, 101), dtype=np.uint8))


def make_project(root: Path) -> Project:
    """Tiles ``t0..t5``, a finished tiny phalanx stage 1 (weights files of random bytes:
    the stand-in network never loads them) and a ``SETTINGS.json``."""
    tiles = root / "tiles"
    tiles.mkdir(parents=True)
    for i in range(N_TILES):
        write_tile(tiles / f"t{i}.png", i)
    cycles = root / "phalanx_w" / "stage1" / "fold_0" / "cycles"
    cycles.mkdir(parents=True)
    for c in range(1, 6):
        (cycles / f"snapshot_{c}.weights.h5").write_bytes(bytes([c]) * 64)
    (cycles / "DONE.json").write_text("{}\n")
    (root / "data").mkdir()
    settings = write_settings(
        root / "SETTINGS.json",
        DATA_DIR="data",
        PHALANX_WEIGHTS_DIR="phalanx_w",
        PREDICTIONS_DIR="predictions",
        PROFILE="tiny",
    )
    return Project(root, settings, tiles, cycles.parents[1], root / "predictions")


class FakePredictor:
    """Stands in for :class:`saltseg.infer.stage.StagePredictor`: probability = pixel / 255
    (so a changed tile changes its row); counts its calls."""

    calls = 0

    def __init__(
        self, recipe: object, files: object, batch_size: int | None = 32, backend: str = "keras"
    ) -> None:
        pass

    def describe(self) -> str:
        return "stand-in network"

    def predict(
        self,
        images: np.ndarray,
        folds: list[int],
        flip_tta: bool = True,
        progress: Callable[[float], None] | None = None,
    ) -> np.ndarray:
        FakePredictor.calls += 1
        if progress is not None:
            progress(len(images))
        return images.astype(np.float32) / 255.0


def new_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A fresh :func:`make_project` with the stand-in network (for a module's fixture)."""
    monkeypatch.setattr("saltseg.infer.stage.StagePredictor", FakePredictor)
    monkeypatch.delenv("SALTSEG_SETTINGS", raising=False)
    monkeypatch.delenv("SALTSEG_DEBUG", raising=False)
    FakePredictor.calls = 0
    return make_project(tmp_path)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``saltseg args`` in-process: exit code (argparse's too), stdout, stderr."""
    try:
        rc = main(list(args))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_clear_error(rc: int, err: str, *names: str, code: int = 2) -> None:
    """Exit ``code``, one ``error:`` message naming each of ``names``, no traceback."""
    assert rc == code, err
    assert "error" in err, err
    assert "Traceback" not in err, err
    for name in names:
        assert name in err, (name, err)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def assert_previous_intact(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    """Every previous output byte-identical; a new file is at most a resumable partial one
    (never a file under a final name)."""
    assert {k: after.get(k) for k in before} == before
    new = [k for k in after if k not in before]
    assert all(k.endswith(".partial.h5") for k in new), new


def enospc(*args: object, **kwargs: object) -> None:
    """A write that finds the disk full."""
    raise OSError(errno.ENOSPC, "No space left on device")
