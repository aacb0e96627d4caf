"""The job graph of train.sh's rounds (saltseg/cli/jobs.py) and ``saltseg run`` without Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from saltseg.cli.jobs import build_graph, fresh
from saltseg.config.settings import load_settings
from saltseg.core.errors import ConfigError


def _settings(tmp_path: Path, profile: str = "full"):
    path = tmp_path / "SETTINGS.json"
    path.write_text(json.dumps({"DATA_DIR": "data", "PROFILE": profile}))
    return load_settings(path)


def test_sequential_graph_is_train_sh_steps(tmp_path: Path) -> None:
    graph = build_graph(_settings(tmp_path), "full")
    assert [j.title for j in graph.jobs][:4] == [
        "train bes stage1",
        "validate bes stage1 (out-of-fold)",
        "predict the competition test tiles with bes stage1",
        "train phalanx stage1",
    ]
    assert len(graph.jobs) == 3 * 5 + 2 + 3  # 5 stages, 2 blends, 3 pseudo-label sets
    assert graph.get("pseudo round 1 phalanx").command[2:4] == ("--rule", "phalanx_slices")
    assert graph.get("train phalanx stage3").deps == ("pseudo round 2 all",)
    names = [j.name for j in graph.jobs]
    for i, job in enumerate(graph.jobs):  # every job after the jobs it waits for
        assert all(names.index(d) < i for d in job.deps), job.name


def test_ray_graph_has_a_job_per_fold_and_pretraining(tmp_path: Path) -> None:
    graph = build_graph(_settings(tmp_path), "full", split_folds=True)
    folds = [j for j in graph.jobs if j.kind == "train"]
    assert len(folds) == 5 * 5
    pre = graph.get("pretrain bes stage2")
    assert "--pretrain-only" in pre.command
    assert set(pre.deps) == {"pseudo round 1 bes", "pseudo round 1 phalanx"}
    assert graph.get("train bes stage2 fold 3").deps == ("pretrain bes stage2",)
    assert graph.get("train bes stage1 fold 3").command[5:7] == ("--fold", "3")
    validate = graph.get("validate phalanx stage3")
    assert validate.deps == (
        "pretrain phalanx stage3",
        *(f"train phalanx stage3 fold {k}" for k in range(5)),
    )
    cpu = build_graph(_settings(tmp_path), "cpu", split_folds=True)
    assert [j.name for j in cpu.jobs] == [
        "train phalanx stage1 fold 0",
        "validate phalanx stage1",
        "predict phalanx stage1",
    ]
    with pytest.raises(ConfigError, match="--until"):
        build_graph(_settings(tmp_path), "full", until=4)


def _touch(path: Path, text: str = "{}") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_complete_and_skipped(tmp_path: Path) -> None:
    """A job is skipped when complete and every job it waits for is skipped too."""
    settings = _settings(tmp_path, "tiny")
    graph = build_graph(settings, "tiny", until=1, split_folds=True)
    assert not any(graph.skipped().values())
    fold = settings.bes_weights_dir / "stage1" / "fold_0"
    for phase in ("bce_dice", "lovasz", "snapshots"):
        _touch(fold / phase / "DONE.json")
    probs = settings.predictions_dir / "probs"
    oof, test = probs / "oof" / "bes_stage1.h5", probs / "test" / "bes_stage1.h5"
    _touch(oof)
    _touch(test)
    os.utime(fold / "snapshots" / "DONE.json", ns=(1, 1))  # the weights are older
    skipped = graph.skipped()
    assert skipped["train bes stage1 fold 0"]
    assert skipped["validate bes stage1"] and skipped["predict bes stage1"]
    assert not skipped["train phalanx stage1 fold 0"] and not skipped["blend round 1"]
    only = graph.only(["validate bes *", "predict bes *"])
    assert [j.deps for j in only.jobs] == [(), ()]  # their training is complete
    with pytest.raises(ConfigError, match="'blend round 1' needs predict phalanx stage1"):
        graph.only(["blend*"])
    with pytest.raises(ConfigError, match="no job"):
        graph.only(["nothing"])
    os.utime(oof, ns=(0, 0))  # older than the weights: predict again
    assert not graph.skipped()["validate bes stage1"]
    assert not fresh(tmp_path / "missing", oof)


def _run(tmp_path: Path, *args: str, saltseg: str | None = None) -> subprocess.CompletedProcess:
    """``saltseg run`` in a fresh Python that reports whether it imported ray."""
    code = (
        "import sys\nfrom saltseg.cli.main import main\n"
        f"rc = main({['--settings', str(tmp_path / 'SETTINGS.json'), 'run', *args]!r})\n"
        "print('ray imported:', 'ray' in sys.modules)\nsys.exit(rc)\n"
    )
    env = dict(os.environ, SALTSEG=saltseg or "")
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_run_without_ray_never_imports_it(tmp_path: Path) -> None:
    _settings(tmp_path, "tiny")
    dry = _run(tmp_path, "--dry-run", "--until", "1", "--ray", "auto")
    assert dry.returncode == 0, dry.stderr
    assert "job graph: 9 jobs, 0 complete (skipped), 9 to run" in dry.stdout
    assert "  run  train bes stage1 fold 0 " in dry.stdout
    assert "ray imported: False" in dry.stdout
    log = tmp_path / "calls.log"
    stub = tmp_path / "stub"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    stub.chmod(0o755)
    seq = _run(tmp_path, "--until", "1", "--profile", "cpu", saltseg=str(stub))
    assert seq.returncode == 0, seq.stderr
    assert "ray imported: False" in seq.stdout
    assert "== [3] predict the competition test tiles with phalanx stage1" in seq.stdout
    assert len(log.read_text().splitlines()) == 3
    stub.write_text("#!/bin/sh\nexit 3\n")
    failed = _run(tmp_path, "--until", "1", saltseg=str(stub))
    assert failed.returncode == 3  # the failing command's exit code, as train.sh's set -e
    assert "== [2]" not in failed.stdout


def test_jobs_run_in_the_runners_process_when_saltseg_is_its_own(tmp_path: Path, capsys) -> None:
    """The sequential runner calls saltseg's main in its own process for each job (one
    TensorFlow start-up, not 20), with train.sh's step lines; the first failure's exit code
    (argparse's SystemExit too) stops it. Another $SALTSEG program runs as processes."""
    from saltseg.cli.runners import is_own_saltseg, run_sequential, saltseg_command

    settings_file = str(tmp_path / "SETTINGS.json")
    assert is_own_saltseg([sys.executable, "-m", "saltseg", "--settings", settings_file])
    own = Path(sys.executable).parent / "saltseg"
    if own.is_file():
        assert is_own_saltseg([str(own), "--settings", settings_file])
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\n")
    assert not is_own_saltseg([str(stub), "--settings", settings_file])
    assert not is_own_saltseg(["python3.9", "-m", "saltseg", "--settings", settings_file])

    graph = build_graph(_settings(tmp_path, "tiny"), "tiny", 1)
    command = saltseg_command(settings_file)
    calls: list[list[str]] = []

    def entry(argv):
        calls.append(list(argv))
        return 0

    assert run_sequential(graph, command, entry) == 0
    assert len(calls) == len(graph.jobs) == 9
    assert calls[0][:2] == ["--settings", settings_file]
    assert calls[0][2:] == list(graph.jobs[0].command)
    assert "== [9] round 1 pseudo-labels, phalanx rule" in capsys.readouterr().out

    def failing(argv):
        calls.append(list(argv))
        if len(calls) == 2:
            raise SystemExit(2)
        return 0

    calls.clear()
    assert run_sequential(graph, command, failing) == 2
    assert len(calls) == 2
    calls.clear()
    assert run_sequential(graph, command, lambda argv: calls.append(argv) or 3) == 3
    assert len(calls) == 1
