"""Reliability corpus, scripts: ``predict.sh`` replaces ``test_prediction.csv`` only when
every step has succeeded (a stand-in ``saltseg`` makes a step fail; nothing is trained)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STUB = """#!/usr/bin/env bash
# saltseg stand-in: `settings` prints what the scripts read; `ensemble` writes its --out;
# `mosaic apply IN --out OUT` copies IN to OUT, or fails when $STUB_FAIL names the step.
shift 2  # --settings FILE
out=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [[ "${args[i]}" == --out ]] && out="${args[i + 1]}"
done
case "$1" in
  settings)
    printf 'PREDICTIONS_DIR: %s\\nNEW_TEST_IMAGES_DATA: /tiles\\n' "$STUB_PRED"
    echo "PROFILE: cpu" ;;
  ensemble) [[ "${STUB_FAIL:-}" == ensemble ]] && exit 2; echo "blend $STUB_RUN" > "$out" ;;
  mosaic)
    [[ "${STUB_FAIL:-}" == mosaic ]] && { echo "error: $3: bad mosaic" >&2; exit 2; }
    { cat "$3"; echo post; } > "$out" ;;
esac
exit 0
"""


def _run(tmp_path: Path, run: str, fail: str = "", *args: str) -> subprocess.CompletedProcess:
    stub = tmp_path / "saltseg-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    (tmp_path / "SETTINGS.json").write_text("{}")
    pred = tmp_path / "pred"
    pred.mkdir(exist_ok=True)
    env = dict(os.environ, SALTSEG=str(stub), STUB_PRED=str(pred), STUB_RUN=run, STUB_FAIL=fail)
    cmd = ["bash", str(ROOT / "predict.sh"), "--settings", str(tmp_path / "SETTINGS.json"), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("fail", ["ensemble", "mosaic"])
def test_failed_step_keeps_the_previous_submission(tmp_path: Path, fail: str) -> None:
    proc = _run(tmp_path, "one")
    assert proc.returncode == 0, proc.stderr
    csv = tmp_path / "pred" / "test_prediction.csv"
    assert csv.read_text() == "blend one\npost\n"
    before = csv.read_bytes()
    proc = _run(tmp_path, "two", fail)
    assert proc.returncode == 2
    assert csv.read_bytes() == before
    assert sorted(p.name for p in csv.parent.iterdir()) == ["test_prediction.csv"]


def test_no_postprocess_writes_the_blend_directly(tmp_path: Path) -> None:
    proc = _run(tmp_path, "three", "", "--no-postprocess")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pred" / "test_prediction.csv").read_text() == "blend three\n"
