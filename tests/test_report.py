"""``saltseg report`` on hand-written epoch logs: order of phases, offsets, table numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import pytest
import yaml

from saltseg.cli.main import main
from saltseg.report.curves import find_runs, read_log

# Recipe order is warmup -> anneal (alphabetical order would be the reverse).
LOGS = {
    "pretrain/pseudo": [(1, 0.9, None, 0.01, 60.0), (2, 0.8, None, 0.01, 60.0)],
    "fold_0/warmup": [
        (1, 0.5, 0.60, 1e-3, 30.0),
        (2, 0.4, 0.70, 1e-3, 30.0),
        (3, 0.3, 0.65, 5e-4, 30.0),
    ],
    "fold_0/anneal": [(1, 0.6, 0.72, 5e-4, 12.0), (2, 0.5, 0.75, 1e-4, 12.0)],
    "fold_1/warmup": [(1, 0.5, 0.55, 1e-3, 6.0), (2, 0.45, 0.55, 1e-3, 6.0)],
    "fold_1/anneal": [(1, 0.7, 0.58, 5e-4, 6.0)],
}


def _write_log(folder: Path, rows: list[tuple]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for epoch, loss, val, lr, sec in rows:
        rec = {"epoch": epoch, "loss": loss, "lr": lr, "seconds": sec}
        if val is not None:
            rec["val_score"] = val
        lines.append(json.dumps(rec))
    (folder / "log.jsonl").write_text("\n".join(lines) + "\n\n")


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    root = tmp_path / "weights" / "mystage"
    for k, (rel, rows) in enumerate(LOGS.items()):
        _write_log(root / rel, rows)
        # log times opposite to the recipe order: the recipe must win
        os.utime(root / rel / "log.jsonl", (1e9 - k * 100, 1e9 - k * 100))
    recipe = {
        "recipe": {
            "pretrain": [{"name": "pseudo"}],
            "phases": [{"name": "warmup"}, {"name": "anneal"}],
        }
    }
    (root / "fold_0" / "config.yaml").write_text(yaml.safe_dump(recipe))
    return root


def test_find_runs_orders_phases_and_offsets(stage: Path) -> None:
    parts, runs = find_runs(stage)
    assert parts == ["mystage"]
    assert [r.name for r in runs] == ["pretrain", "fold_0", "fold_1"]
    assert [p.name for p in runs[1].phases] == ["warmup", "anneal"]
    assert [p.name for p in runs[2].phases] == ["warmup", "anneal"]  # order from fold_0's config
    assert [r.offset for r in runs] == [0, 2, 2]
    assert runs[1].phases[0].best() == (0.70, 2)
    assert runs[0].phases[0].best()[1] is None


def test_report_stage_table(stage: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["report", str(stage), "--out", str(out)]) == 0
    img = cv2.imread(str(out / "curves.png"))
    assert img is not None and img.shape[1] >= 800 and img.shape[0] >= 250
    md = (out / "curves.md").read_text()
    assert "| pretrain | pseudo | 2 | - | - | 2.0 |" in md
    assert "| fold_0 | warmup | 3 | 0.7000 | 2 | 1.5 |" in md
    assert "| fold_0 | anneal | 2 | 0.7500 | 2 | 0.4 |" in md
    assert "| fold_0 | all | 5 | 0.7500 | (anneal) | 1.9 |" in md
    assert "| fold_1 | warmup | 2 | 0.5500 | 1 | 0.2 |" in md
    assert "| fold_1 | all | 3 | 0.5800 | (anneal) | 0.3 |" in md
    assert md.index("| fold_0 | warmup") < md.index("| fold_0 | anneal")
    assert "fold_1 | all" in capsys.readouterr().out


def test_report_fold_and_phase_folders(stage: Path, tmp_path: Path) -> None:
    assert main(["report", str(stage / "fold_1"), "--out", str(tmp_path / "f")]) == 0
    md = (tmp_path / "f" / "curves.md").read_text()
    assert "`mystage/fold_1`" in md and "fold_0" not in md
    assert main(["report", str(stage / "fold_0" / "anneal"), "--out", str(tmp_path / "p")]) == 0
    md = (tmp_path / "p" / "curves.md").read_text()
    assert "| fold_0 | anneal | 2 | 0.7500 | 2 | 0.4 |" in md and "warmup" not in md
    assert cv2.imread(str(tmp_path / "p" / "curves.png")) is not None


def test_report_default_out_under_reports(
    stage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(stage / "fold_0")]) == 0
    assert (tmp_path / "reports/curves/mystage/fold_0/curves.png").is_file()


def test_report_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no log.jsonl" in capsys.readouterr().err
    bad = tmp_path / "bad" / "fold_0" / "p"
    bad.mkdir(parents=True)
    (bad / "log.jsonl").write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(Exception, match="line 2 is not JSON"):
        read_log(bad / "log.jsonl")


# --------------------------------------------------------------------------- bench/RESULTS.md


def _bench_module(name: str):
    """``bench/<name>.py`` as a module (bench/ is not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_all():
    return _bench_module("run_all")


OLD_RESULTS = """# Benchmark results

- date: old

## b_forward

| old b |
|---|

_b_forward.py: 5 s_

## gone

| a deleted script |

## a_load

| old a |
"""


def test_bench_merge_keeps_other_sections(run_all) -> None:
    scripts = ["c_new", "b_forward", "a_load"]
    text = run_all.merge_results(
        "# H\n\n- updated: now", OLD_RESULTS, {"b_forward": "| new b |"}, scripts
    )
    assert text.startswith("# H\n\n- updated: now\n")
    assert "| old b |" not in text and "| new b |" in text
    assert "| old a |" in text  # not re-run: kept
    assert "gone" not in text  # script deleted: dropped
    assert "c_new" not in text  # never run: no section
    assert text.index("## a_load") < text.index("## b_forward")
    # a new script's section lands in sorted order; merging again is stable
    again = run_all.merge_results("# H", text, {"c_new": "| c |\n\n## not a script"}, scripts)
    assert again.index("## b_forward") < again.index("## c_new")
    assert run_all.parse_sections(again, scripts)["c_new"] == "| c |\n\n## not a script"
    assert run_all.parse_sections(again, scripts)["a_load"] == "| old a |"


def test_bench_select(run_all) -> None:
    names = ["a_load", "b_forward", "cpu_budget"]
    assert run_all.select(names, None, None) == names
    assert run_all.select(names, ["bench/b_forward.py", "a_load"], None) == ["a_load", "b_forward"]
    assert run_all.select(names, None, ["cpu_budget.py"]) == ["a_load", "b_forward"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        run_all.select(names, ["nope"], None)


def test_cpu_budget_fixed_epochs() -> None:
    """``--epochs``: the cpu profile with fixed epochs per phase and no wall-clock budget."""
    from saltseg.config.recipe import load_stage

    cpu_budget = _bench_module("cpu_budget")
    recipe = load_stage("phalanx", "stage1", "cpu")
    assert recipe.budget_minutes == 30
    fixed = cpu_budget.fixed_epochs(recipe, [15, 20])
    assert fixed.budget_minutes == 0
    assert [p.cosine.cycle_epochs for p in fixed.phases] == [[15], [20]]
    assert [p.total_epochs for p in fixed.phases] == [15, 20]
    # everything else is the profile's own
    assert [p.optimizer for p in fixed.phases] == [p.optimizer for p in recipe.phases]
    assert [p.cosine.cycle_epochs for p in recipe.phases] == [[10], [14]]  # not changed
    with pytest.raises(ValueError, match=r"one positive count per phase \(bce_dice, lovasz\)"):
        cpu_budget.fixed_epochs(recipe, [15])
    with pytest.raises(ValueError, match="one positive count"):
        cpu_budget.fixed_epochs(recipe, [15, 0])
    with pytest.raises(SystemExit) as exc:
        cpu_budget.main(["--epochs", "15,x"])
    assert exc.value.code == 2


def test_backend_bench_thread_candidates_and_table() -> None:
    """The export backends are timed at every core, one less, a half and a quarter of them;
    the table shows the count each backend ran with (older measurements: the worker's)."""
    bench = _bench_module("predict_backends")
    assert bench.thread_candidates(16) == [16, 15, 8, 4]
    assert bench.thread_candidates(2) == [2, 1]
    assert bench.thread_candidates(1) == [1]
    row = {"tiles_per_s": 9.5, "gflops": 600.0, "peak_share": 0.8, "precision": "bfloat16"}
    row |= {"setup_s": 6.0, "agrees": True, "pixels_identical": 1.0, "score_delta": 0.0}
    result = {"name": "phalanx-v4", "batch": 8, "threads": 2, "gflop": 68.0, "tiles": 16}
    result |= {"peaks": {"float32": 400, "bfloat16": 800}}
    result["backends"] = {"keras": dict(row, tiles_per_s=5.0), "openvino": dict(row, threads=1)}
    table = bench.format_tables([result]).splitlines()
    assert table[2].endswith("| 2 |") and table[3].endswith("| 1 |")
    assert "| phalanx-v4 | 400 / 800 | 16 | openvino | 9.50 (1.90x) |" in table
