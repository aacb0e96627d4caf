"""The whole pipeline: `make demo` (train.sh + predict.sh, demo profile) with a crash in the
middle and a resume, and predict.sh over the real test tiles when TGS_DATA is set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saltseg.data.submission import read_rle_csv
from saltseg.data.tiles import TGSDirectory, is_black, read_images

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, VENV=str(VENV), TF_CPP_MIN_LOG_LEVEL="2", **extra)


def _log_epochs(phase: Path) -> list[int]:
    lines = (phase / "log.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines if line.strip()]


@pytest.mark.slow
@pytest.mark.xdist_group("pipeline")
def test_demo_crash_resume_and_score(tmp_path: Path) -> None:
    """demo.sh (its default sizes and profile) killed in b.e.s. stage 1's Lovasz phase, rerun:
    resumes, completes every round, and its submission scores at least 0.6 on the generated
    test tiles' hidden labels (an all-empty submission: about 0.37)."""
    out = tmp_path / "demo"
    env = _env(DEMO_DIR=str(out))
    cmd = ["bash", str(ROOT / "scripts" / "demo.sh")]
    first = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    marker = out / "weights/bes/stage1/fold_0/bce_dice/DONE.json"
    deadline = time.monotonic() + 1200
    while not marker.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert first.poll() is None, "demo.sh ended before it could be interrupted"
    time.sleep(3)  # into the Lovasz phase
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    text = proc.stdout
    assert "exists: " in text  # the dataset was kept
    assert "[bes/stage1 fold 0 bce_dice]: complete, skipped" in text
    stage1 = out / "weights/bes/stage1/fold_0"
    assert _log_epochs(stage1 / "bce_dice") == [1, 2, 3, 4, 5, 6]  # nothing trained twice
    assert _log_epochs(stage1 / "lovasz") == [1, 2]
    for family, stage in [
        ("bes", "stage1"),
        ("phalanx", "stage1"),
        ("bes", "stage2"),
        ("phalanx", "stage2"),
        ("phalanx", "stage3"),
    ]:
        assert f"[{family}/{stage}] validation score " in text
        assert (out / "predictions/probs/test" / f"{family}_{stage}.h5").is_file()
    for name in ("round1_bes", "round1_phalanx", "round2_all"):
        assert (out / "predictions/pseudo" / name / "DONE.json").is_file()
    phalanx_pseudo = pd.read_csv(out / "predictions/pseudo/round1_phalanx/pseudo_labels.csv")
    assert set(phalanx_pseudo["fold"]) <= set(range(5))

    csv = out / "predictions/test_prediction.csv"
    ids, masks = read_rle_csv(csv)
    assert ids == TGSDirectory(out).submission_order()
    black = is_black(read_images([out / "test/images" / f"{i}.png" for i in ids]))
    assert black.any() and not masks[black].any()
    score = float(next(x for x in text.splitlines() if x.startswith("score: ")).split()[1])
    empty = float(next(x for x in text.splitlines() if x.startswith("all-empty")).split()[-1])
    assert 0.3 < empty < 0.45
    assert score >= 0.6, text[-3000:]
    assert "the networks beat the all-empty prediction" in text
    assert (out / "review/review_overlays.png").stat().st_size > 5000
    leftovers = [p for p in out.rglob("*") if ".partial." in p.name or p.name.startswith(".")]
    assert not leftovers, leftovers


# --------------------------------------------------------------------------- real data

PHALANX_RECIPE = """family: phalanx
stage: ci_phalanx
model: phalanx-v5-demo  # the cheapest network to run over 18,000 tiles
folds: [0]
max_train_tiles: 64
max_val_tiles: 32
phases:
  - name: lovasz
    loss: lovasz
    optimizer: {name: adam, lr: 1.0e-3}
    batch_size: 16
    epochs: 1
    schedule: constant
    init: scratch
    augmentation: phalanx
predict:
  - {phase: lovasz, file: best}
profiles:
  cpu: {max_train_tiles: 64}
"""


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.xdist_group("pipeline_real")
def test_predict_sh_on_the_real_test_tiles(tgs_data: Path, tmp_path: Path) -> None:
    """A tiny network trained here on real tiles; predict.sh over all 18,000 test tiles,
    the cpu profile's way (one phalanx network, no blend: the blend of both families is
    covered on synthetic data by the demo test)."""
    settings = tmp_path / "SETTINGS.json"
    settings.write_text(
        json.dumps(
            {
                "DATA_DIR": str(tgs_data),
                "BES_WEIGHTS_DIR": "weights/bes",
                "PHALANX_WEIGHTS_DIR": "weights/phalanx",
                "PREDICTIONS_DIR": "predictions",
                "PROFILE": "cpu",
            }
        )
    )
    saltseg = str(VENV / "bin" / "saltseg")
    recipe = tmp_path / "phalanx.yaml"
    recipe.write_text(PHALANX_RECIPE)
    subprocess.run(
        [saltseg, "--settings", str(settings), "train", "--recipe", str(recipe)],
        env=_env(),
        check=True,
        capture_output=True,
    )
    proc = subprocess.run(
        [
            "bash",
            str(ROOT / "predict.sh"),
            "--settings",
            str(settings),
            "--no-tta",
            "--phalanx-recipe",
            str(recipe),
        ],
        env=_env(SALTSEG=saltseg),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "[predict phalanx/ci_phalanx] 18000 tiles" in proc.stdout
    assert "cpu profile: one network" in proc.stdout
    ids, masks = read_rle_csv(tmp_path / "predictions/test_prediction.csv")
    sample = pd.read_csv(tgs_data / "sample_submission.csv")
    assert ids == sample["id"].tolist()  # every id once, in sample_submission order
    assert len(set(ids)) == 18000
    black = is_black(read_images([tgs_data / "test/images" / f"{i}.png" for i in ids]))
    assert black.sum() == 430 and not masks[black].any()
    coverage = masks.reshape(len(masks), -1).mean(axis=1)
    assert np.isfinite(coverage).all()
    assert "jigsaw-mosaic post-processing" in proc.stdout


STUB = """#!/usr/bin/env bash
# saltseg stand-in: logs its arguments; `settings` prints what the scripts read
echo "$*" >> "$STUB_LOG"
[[ "$3" == settings ]] &&
  printf 'PREDICTIONS_DIR: %s\\nNEW_TEST_IMAGES_DATA: %s\\nPROFILE: %s\\n' \\
    "$STUB_PRED" "$STUB_IMAGES" "$STUB_PROFILE"
exit 0
"""


def _stub_calls(tmp_path: Path, script: str, *args: str, profile: str = "full") -> list[str]:
    stub = tmp_path / "saltseg-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    (tmp_path / "SETTINGS.json").write_text("{}")
    log = tmp_path / f"{script}.log"
    log.unlink(missing_ok=True)
    env = _env(
        SALTSEG=str(stub),
        STUB_LOG=str(log),
        STUB_PRED="/p",
        STUB_IMAGES="/tiles",
        STUB_PROFILE=profile,
    )
    cmd = ["bash", str(ROOT / script), "--settings", str(tmp_path / "SETTINGS.json"), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prefix = f"--settings {tmp_path / 'SETTINGS.json'} "
    return [c.removeprefix(prefix) for c in log.read_text().splitlines() if " settings" not in c]


def test_cpu_profile_scripts_run_the_one_cpu_network(tmp_path: Path) -> None:
    """train.sh/predict.sh with the cpu profile: phalanx stage 1 alone, no blend, no b.e.s."""
    calls = _stub_calls(tmp_path, "train.sh", "--profile", "cpu", "--budget-minutes", "12")
    assert calls == [
        "train --family phalanx --stage stage1 --all-folds --verbose 0 --profile cpu "
        "--budget-minutes 12",
        "predict --family phalanx --stage stage1 --set oof --profile cpu",
        "predict --family phalanx --stage stage1 --competition-test --profile cpu",
    ]
    # the profile may come from SETTINGS.json as well as from --profile
    for args, profile in ((["--profile", "cpu"], "full"), ([], "cpu")):
        calls = _stub_calls(tmp_path, "predict.sh", *args, "--no-postprocess", profile=profile)
        extra = " --profile cpu" if args else ""
        assert calls == [
            f"predict --family phalanx --stage stage1 --images /tiles{extra}",
            "ensemble /p/probs/test/phalanx_stage1.h5 --minmax none --threshold 0.5 "
            "--images /tiles --out /p/test_prediction.csv",
        ], calls
    full = _stub_calls(tmp_path, "predict.sh", "--no-postprocess")
    assert [c.split()[:5] for c in full[:2]] == [
        ["predict", "--family", "bes", "--stage", "stage2"],
        ["predict", "--family", "phalanx", "--stage", "stage3"],
    ]
