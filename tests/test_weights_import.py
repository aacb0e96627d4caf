"""``saltseg weights import|check|stage`` and ``./predict.sh --original`` on a fake original
layout (random weights in the original formats; tiny widths)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tgs_dir
from original_fakes import write_original_layout, write_torch_legacy

from saltseg.cli.main import main
from saltseg.config.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent


def _settings(root: Path) -> Path:
    path = root / "SETTINGS.json"
    keys = {
        "DATA_DIR": "data",
        "BES_WEIGHTS_DIR": "w/bes",
        "PHALANX_WEIGHTS_DIR": "w/phalanx",
        "PREDICTIONS_DIR": "pred",
        "PROFILE": "tiny",
    }
    path.write_text(json.dumps(keys))
    return path


def _saltseg(settings: Path, *args: str) -> int:
    return main(["--settings", str(settings), *args])


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fake originals (tiny width; folds 4 of phalanx in the zip format) and a TGS folder."""
    root = tmp_path_factory.mktemp("original")
    write_original_layout(root / "orig", width=16, zip_format=lambda fold, snap: fold == 4)
    write_tgs_dir(root / "data", n_train=16, n_test=5)
    _settings(root)
    return root


@pytest.mark.xdist_group("original_layout")  # one worker builds the fake layout once
def test_import_errors_write_nothing(layout: Path, tmp_path: Path, capsys) -> None:
    settings = _settings(tmp_path)
    weights = tmp_path / "w"
    (tmp_path / "empty").mkdir()
    assert _saltseg(settings, "weights", "import", str(tmp_path / "empty")) == 2
    assert "the folder is empty" in capsys.readouterr().err
    # a folder with a b.e.s. stage missing
    part = tmp_path / "part"
    for sub in ("bes/weights/unet_resnext_50_lovasz_stage_2_2", "phalanx/weights"):
        (part / sub).mkdir(parents=True)
        for f in (layout / "orig" / sub).iterdir():
            (part / sub / f.name).symlink_to(f)
    assert _saltseg(settings, "weights", "import", str(part)) == 2
    err = capsys.readouterr().err
    assert "unet_resnext_50_lovasz_stage_2_3: b.e.s. stage 2_3 folder missing" in err
    assert err.count("\n") == 1 and not weights.exists()
    # a truncated third file: the two before it were converted, none is kept
    bad = tmp_path / "bad"
    (bad / "phalanx/weights").mkdir(parents=True)
    for f in (layout / "orig/phalanx/weights").iterdir():
        (bad / "phalanx/weights" / f.name).symlink_to(f)
    last = bad / "phalanx/weights/model_128_res34v502.pth"
    last.unlink()
    last.write_bytes((layout / "orig/phalanx/weights/model_128_res34v502.pth").read_bytes()[:5000])
    assert _saltseg(settings, "weights", "import", str(bad), "--family", "phalanx") == 2
    assert "model_128_res34v502.pth" in capsys.readouterr().err
    assert not any(p.is_file() for p in weights.rglob("*"))
    # a key missing (a file of another network): named, nothing written
    state = {"conv1.0.weight": np.zeros((16, 3, 3, 3), np.float32)}
    write_torch_legacy(last, state)
    assert _saltseg(settings, "weights", "import", str(bad), "--family", "phalanx") == 2
    assert "model_128_res34v502.pth: does not fit" in capsys.readouterr().err
    assert not any(p.is_file() for p in weights.rglob("*"))


@pytest.mark.slow
@pytest.mark.xdist_group("original_layout")
def test_import_predict_check(layout: Path, capsys) -> None:
    """Import the 38 fake files; predict.sh --original writes the CSV that the original's
    recipe computed by hand gives; check fails like a wrong map; variants switch."""
    settings = layout / "SETTINGS.json"
    assert _saltseg(settings, "weights", "import", str(layout / "orig")) == 0
    s = load_settings(settings)
    bes = json.loads((s.bes_weights_dir / "original/manifest.json").read_text())
    pha = json.loads((s.phalanx_weights_dir / "original/manifest.json").read_text())
    assert len(bes["files"]) == 20 and len(pha["files"]) == 18
    assert pha["scse"] == "map" and bes["scse"] == "gated"
    row = next(r for r in bes["files"] if r["original_stage"] == "stage_2_2" and r["fold"] == 3)
    assert row["weight_in_fold"] == 3.0 and len(row["sha256"]) == 64
    assert row["file"] == "fold_3/finetune/best.weights.h5"
    assert len(list((s.phalanx_weights_dir / "original/fold_4/cycles").glob("*.h5"))) == 3
    capsys.readouterr()

    env = dict(os.environ, SALTSEG=f"{sys.executable} -m saltseg", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = ["bash", str(ROOT / "predict.sh"), "--settings", str(settings), "--original", "--no-tta"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "20 network(s)" in proc.stdout and "18 network(s)" in proc.stdout

    from original_by_hand import original_prediction

    from saltseg.data.submission import read_rle_csv

    hand, ambiguous = original_prediction(layout / "orig", layout / "data/test/images")
    ids, masks = read_rle_csv(s.predictions_dir / "test_prediction.csv")
    order = sorted(hand)
    assert sorted(ids) == order
    got = np.stack([masks[ids.index(i)] for i in order])
    want = np.stack([hand[i] for i in order])
    amb = np.stack([ambiguous[i] for i in order])
    assert amb.mean() < 0.5  # random networks: many blends lie near 0.5
    assert np.array_equal(got[~amb], want[~amb])

    # check: random weights score like a wrong map -> one-line error, exit 2
    check = ["weights", "check", "--tiles", "6", "--family", "phalanx", "--fold", "3"]
    assert _saltseg(settings, *check) == 2
    out, err = capsys.readouterr()
    assert "| phalanx | map | 1 |" in out and "| phalanx | gated | 1 |" in out
    assert "score below 0.6" in err and err.count("\n") == 1
    assert _saltseg(settings, "weights", "stage", "--family", "phalanx") == 0
    assert capsys.readouterr().out.strip() == "original"
    from saltseg.infer.original import set_variant

    set_variant(s, "phalanx", "gated", "tiny")
    assert _saltseg(settings, "weights", "stage", "--family", "phalanx") == 0
    assert capsys.readouterr().out.strip() == "original_gated"


STUB = """#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
[[ "$3" == settings ]] &&
  printf 'PREDICTIONS_DIR: /p\\nNEW_TEST_IMAGES_DATA: /t\\nPROFILE: %s\\n' "$STUB_PROFILE"
[[ "$3 $4" == "weights stage" ]] && echo original_gated
exit 0
"""


@pytest.mark.parametrize("profile", ["full", "cpu"])
def test_predict_sh_original_calls(tmp_path: Path, profile: str) -> None:
    """predict.sh --original: the imported stages, the manifest's phalanx variant."""
    stub = tmp_path / "stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    (tmp_path / "SETTINGS.json").write_text("{}")
    log = tmp_path / "log"
    env = dict(os.environ, SALTSEG=str(stub), STUB_LOG=str(log), STUB_PROFILE=profile)
    cmd = ["bash", str(ROOT / "predict.sh"), "--settings", str(tmp_path / "SETTINGS.json")]
    proc = subprocess.run([*cmd, "--original"], env=env, capture_output=True, text=True)
    if profile == "cpu":
        assert proc.returncode == 2 and "not with --profile cpu" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    calls = [c.split(" ", 2)[2] for c in log.read_text().splitlines() if " settings" not in c]
    assert calls[1].startswith("predict --family bes --stage original --images /t")
    assert calls[2].startswith("predict --family phalanx --stage original_gated --images /t")
    assert calls[3].startswith("ensemble /p/probs/test/bes_original.h5 ")
    assert "/p/probs/test/phalanx_original_gated.h5 --weights 0.5 0.5 --threshold 0.5" in calls[3]
    assert calls[3].endswith("--out /p/.staging-test_prediction.csv")  # replaced at the end
    assert calls[4].startswith(
        "mosaic apply /p/.staging-test_prediction.csv --out /p/test_prediction.csv"
    )
