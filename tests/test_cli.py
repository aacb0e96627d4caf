"""End-to-end checks of the command line and the demo script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from saltseg.cli.main import main
from saltseg.data.tiles import TGSDirectory

ROOT = Path(__file__).resolve().parents[1]


def test_synth_then_check(tmp_path: Path, capsys) -> None:
    out = tmp_path / "syn"
    args = ["synth", "--out", str(out), "--n-train", "40", "--n-test", "10", "--preview"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "wrote 40 train + 10 test tiles" in text
    assert (out / "preview.png").stat().st_size > 1000
    assert main(["check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "train: 40 tiles" in text and "test: 10 tiles" in text and "ok:" in text
    train = TGSDirectory(out).load_train()
    assert len(train) == 40


def test_check_reports_bad_input(tgs_dir, capsys) -> None:
    root, _ = tgs_dir
    victim = TGSDirectory(root).train_ids()[1]
    (root / "train/masks" / f"{victim}.png").unlink()
    assert main(["check", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and victim in err and "mask" in err


def test_module_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "saltseg", "--help"], capture_output=True, text=True, check=True
    )
    for cmd in ("eval", "folds", "synth", "check", "settings", "models"):
        assert cmd in proc.stdout
