"""``saltseg report``: training curves and a summary table from the epoch logs of a run.

``RUN_DIR`` is a stage folder ``<weights>/<stage>/`` (every ``fold_<k>`` and the optional
``pretrain`` chain), one ``fold_<k>`` (or ``pretrain``) folder, or one phase folder; each
phase folder holds ``log.jsonl`` with one JSON object per epoch (``epoch``, ``loss``,
``val_score``, ``lr``, ``seconds``; see :class:`saltseg.train.callbacks.EpochLog`).

Phases run one after another, so the epochs are plotted cumulatively across the phases of a
fold (after the pretrain chain, when there is one) with the phase boundaries marked. Phase
order comes from the run's ``config.yaml`` (the resolved recipe) and, without one, from the
time each log was last written.

Outputs (default ``reports/curves/<stage>[/<fold>[/<phase>]]/``)::

    curves.png   loss, validation score and learning rate per epoch, one line per fold
    curves.md    per fold and phase: epochs, best val_score and its epoch, minutes
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saltseg.core.errors import DataError

LOG_NAME = "log.jsonl"
DEFAULT_OUT = Path("reports/curves")
PANELS = (("loss", "training loss"), ("val_score", "validation score"), ("lr", "learning rate"))


# --------------------------------------------------------------------------- reading


def read_log(path: Path) -> list[dict[str, Any]]:
    """The epoch records of one ``log.jsonl`` (blank lines skipped; bad lines are errors)."""
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {n} is not JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}: line {n} is not a JSON object")
        records.append(rec)
    return records


@dataclass
class PhaseLog:
    """The epoch records of one phase."""

    name: str
    records: list[dict[str, Any]]

    @property
    def epochs(self) -> int:
        return len(self.records)

    def column(self, key: str) -> np.ndarray:
        """One value per epoch, NaN where the key is missing or not a number."""
        out = np.full(self.epochs, np.nan)
        for i, rec in enumerate(self.records):
            v = rec.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[i] = float(v)
        return out

    def best(self) -> tuple[float, int | None]:
        """(best val_score, its epoch number) or (NaN, None) without validation scores."""
        scores = self.column("val_score")
        if not np.isfinite(scores).any():
            return float("nan"), None
        i = int(np.nanargmax(scores))
        epoch = self.records[i].get("epoch", i + 1)
        return float(scores[i]), int(epoch)

    @property
    def minutes(self) -> float:
        return float(np.nansum(self.column("seconds"))) / 60.0


@dataclass
class RunLog:
    """One fold (or the pretrain chain): its phases in the order they ran."""

    name: str
    phases: list[PhaseLog]
    offset: int = 0
    """Epochs trained before this run's first phase (the pretrain chain)."""

    @property
    def epochs(self) -> int:
        return sum(p.epochs for p in self.phases)


def _recipe_order(config: Path) -> dict[str, list[str]]:
    """Phase names of ``pretrain`` and of the folds, from a fold's ``config.yaml``."""
    import yaml

    try:
        recipe = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("recipe", {})
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    order: dict[str, list[str]] = {}
    for key, run in (("pretrain", "pretrain"), ("phases", "fold")):
        names = [p.get("name") for p in recipe.get(key) or [] if isinstance(p, dict)]
        order[run] = [str(n) for n in names if n]
    return order


def _phase_folders(run_dir: Path, preferred: list[str]) -> list[Path]:
    """Phase folders of a run: recipe order first, then the others by log time."""
    found = {p.parent.name: p.parent for p in run_dir.glob(f"*/{LOG_NAME}")}
    known = [found[n] for n in preferred if n in found]
    rest = sorted(
        (f for n, f in found.items() if n not in preferred),
        key=lambda f: ((f / LOG_NAME).stat().st_mtime, f.name),
    )
    return known + rest


def _run_sort_key(name: str) -> tuple[int, int, str]:
    if name == "pretrain":
        return (0, 0, name)
    m = re.fullmatch(r"fold_(\d+)", name)
    return (1, int(m.group(1)), name) if m else (2, 0, name)


def _stage_order(stage_dir: Path) -> dict[str, list[str]]:
    for cfg in sorted(stage_dir.glob("*/config.yaml")):
        order = _recipe_order(cfg)
        if order:
            return order
    return {}


def _load_run(run_dir: Path, order: dict[str, list[str]]) -> RunLog:
    kind = "pretrain" if run_dir.name == "pretrain" else "fold"
    own = run_dir / "config.yaml"
    if own.is_file():
        order = _recipe_order(own) or order
    folders = _phase_folders(run_dir, order.get(kind, []))
    return RunLog(run_dir.name, [PhaseLog(f.name, read_log(f / LOG_NAME)) for f in folders])


def find_runs(run_dir: Path) -> tuple[list[str], list[RunLog]]:
    """The runs under a stage, fold or phase folder, and the folder's label parts.

    The label is ``[stage]``, ``[stage, fold]`` or ``[stage, fold, phase]``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run folder not found")
    if (run_dir / LOG_NAME).is_file():
        phase = PhaseLog(run_dir.name, read_log(run_dir / LOG_NAME))
        parts = [run_dir.parent.parent.name, run_dir.parent.name, run_dir.name]
        return parts, [RunLog(run_dir.parent.name, [phase])]
    if any(run_dir.glob(f"*/{LOG_NAME}")):
        run = _load_run(run_dir, _stage_order(run_dir.parent))
        return [run_dir.parent.name, run_dir.name], [run]
    run_dirs = sorted(
        {p.parent.parent for p in run_dir.glob(f"*/*/{LOG_NAME}")},
        key=lambda d: _run_sort_key(d.name),
    )
    if not run_dirs:
        raise DataError(
            f"{run_dir}: no {LOG_NAME} found (give a stage folder <weights>/<stage>, "
            "a fold_<k> folder or a phase folder)"
        )
    order = _stage_order(run_dir)
    runs = [_load_run(d, order) for d in run_dirs]
    pre = next((r for r in runs if r.name == "pretrain"), None)
    for r in runs:
        if pre is not None and r is not pre:
            r.offset = pre.epochs
    return [run_dir.name], runs


# --------------------------------------------------------------------------- figure


def _series(run: RunLog, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative epoch, value) of a run across its phases."""
    y = np.concatenate([p.column(key) for p in run.phases]) if run.phases else np.empty(0)
    return run.offset + np.arange(1, len(y) + 1), y


def _boundaries(run: RunLog) -> list[tuple[float, float, str]]:
    """(start, end, phase name) in cumulative epochs, ends at half epochs."""
    out, start = [], run.offset
    for p in run.phases:
        out.append((start + 0.5, start + p.epochs + 0.5, p.name))
        start += p.epochs
    return out


def plot_curves(runs: list[RunLog], title: str, out_png: Path, dpi: int | None = None) -> Path:
    """Three panels (loss, val_score, lr) with one line per run and phase boundaries."""
    from saltseg.report.plots import label_axes, new_figure, save_figure

    fig = new_figure(13, 3.9)
    axes = fig.subplots(1, 3)
    colours = [f"C{k % 10}" for k in range(len(runs))]
    labelled = {r.name for r in runs if r.name == "pretrain"} | {
        next((r.name for r in runs if r.name != "pretrain"), "")
    }
    for ax, (key, what) in zip(axes, PANELS, strict=True):
        for run, colour in zip(runs, colours, strict=True):
            x, y = _series(run, key)
            if np.isfinite(y).any():
                ax.plot(x, y, color=colour, marker=".", markersize=3, linewidth=1, label=run.name)
            for start, end, name in _boundaries(run):
                if start > 0.5:
                    ax.axvline(start, color=colour, linestyle=":", linewidth=0.9, alpha=0.7)
                if run.name in labelled:
                    ax.text(
                        (start + end) / 2,
                        0.98,
                        name,
                        transform=ax.get_xaxis_transform(),
                        ha="center",
                        va="top",
                        fontsize=7,
                        color="0.3",
                    )
        if key == "lr" and _all_positive(runs, key):
            ax.set_yscale("log")
        ax.margins(y=0.15)  # room for the phase names
        label_axes(ax, "epoch (cumulative over phases)", what, what)
    if len(runs) > 1:
        axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi)


def _all_positive(runs: list[RunLog], key: str) -> bool:
    values = np.concatenate([_series(r, key)[1] for r in runs])
    values = values[np.isfinite(values)]
    return bool(values.size) and bool((values > 0).all())


# --------------------------------------------------------------------------- table


def summary_rows(runs: list[RunLog]) -> list[list[Any]]:
    """Per run and phase: epochs, best val_score, its epoch, minutes; then a run total."""
    rows: list[list[Any]] = []
    for run in runs:
        for p in run.phases:
            score, at = p.best()
            rows.append([run.name, p.name, p.epochs, score, at, f"{p.minutes:.1f}"])
        if len(run.phases) > 1:
            bests = [(p.best()[0], p.name) for p in run.phases]
            finite = [b for b in bests if math.isfinite(b[0])]
            top = max(finite, key=lambda b: b[0]) if finite else (float("nan"), "-")
            minutes = sum(p.minutes for p in run.phases)
            rows.append([run.name, "all", run.epochs, top[0], f"({top[1]})", f"{minutes:.1f}"])
    return rows


def summary_markdown(label: str, runs: list[RunLog], png: Path) -> str:
    """The Markdown table of a report and the figure."""
    from saltseg.report.plots import markdown_table

    table = markdown_table(
        ["fold", "phase", "epochs", "best val_score", "best epoch", "minutes"],
        summary_rows(runs),
        [False, False, True, True, True, True],
    )
    return (
        f"# Training curves: `{label}`\n\n{table}\n\n"
        "Best epoch counts within its phase; `all` rows give the best phase in brackets.\n\n"
        f"![curves]({png.name})\n"
    )


# --------------------------------------------------------------------------- command


def run_report(run_dir: Path, out: Path | None = None, dpi: int | None = None) -> Path:
    """Read the logs under ``run_dir`` and write ``curves.png`` and ``curves.md``; return out."""
    from saltseg.core.atomic import atomic_write_text

    parts, runs = find_runs(run_dir)
    out = out or DEFAULT_OUT.joinpath(*parts)
    label = "/".join(parts)
    png = plot_curves(runs, f"training curves: {label}", out / "curves.png", dpi)
    atomic_write_text(out / "curves.md", summary_markdown(label, runs, png))
    return out


def cmd_report(args: argparse.Namespace) -> int:
    """``saltseg report``: plot the epoch logs of a stage, fold or phase folder."""
    out = run_report(Path(args.run_dir), Path(args.out) if args.out else None, args.dpi)
    print((out / "curves.md").read_text(encoding="utf-8").split("\n\n")[1])
    print(f"wrote {out / 'curves.png'} and {out / 'curves.md'}")
    return 0


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``report`` sub-command."""
    from saltseg.report.eda import add_dpi_argument

    p = subparsers.add_parser(
        "report",
        help="training curves (loss, val_score, lr) of a run folder",
        description="Plot the log.jsonl files of a stage folder (all folds), a fold folder "
        "or a phase folder, and tabulate epochs, best scores and minutes.",
    )
    p.add_argument("run_dir", help="<weights>/<stage>, its fold_<k> or a phase folder")
    p.add_argument("--out", help=f"output folder (default {DEFAULT_OUT}/<stage>[/<fold>...])")
    add_dpi_argument(p)
    p.set_defaults(func=cmd_report)
    return p
