"""The training rounds as data: a graph of jobs that ``./train.sh`` and ``saltseg run`` execute.

A :class:`Job` is one ``saltseg`` command with the files it reads and writes, the jobs it
waits for, what it needs (a GPU or not) and a ``complete()`` check built from the markers
the commands themselves use: a phase's ``DONE.json``, a probability file newer than the
weights it was predicted with, a blend newer than its inputs (``train.sh``'s ``fresh``), a
pseudo-label folder's ``DONE.json``. :func:`build_graph` lists the jobs in ``train.sh``'s
order, either one training job per stage (``--all-folds``, the sequential runner) or one
per fold plus a stage's fold-independent pretraining (the Ray runner).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatch
from pathlib import Path

from saltseg.config.layout import PSEUDO_CSV, probs_path, stage_dir
from saltseg.config.recipe import StageRecipe, resolve_recipe
from saltseg.config.settings import Settings
from saltseg.core.errors import ConfigError


@dataclass(frozen=True)
class Job:
    """One step of the rounds: a ``saltseg`` command (without ``--settings``)."""

    name: str
    title: str
    kind: str  # train, pretrain, validate, predict, blend, pseudo
    command: tuple[str, ...]
    inputs: tuple[Path, ...]
    outputs: tuple[Path, ...]
    deps: tuple[str, ...]
    gpu: bool  # runs a network (a GPU when the cluster has them)
    complete: Callable[[], bool] = field(compare=False, repr=False)
    skip_note: str | None = None  # the sequential runner prints this instead when complete


@dataclass
class Graph:
    """The jobs in run order (every job after the jobs it depends on)."""

    jobs: list[Job]
    profile: str
    settings: Settings

    def get(self, name: str) -> Job:
        return next(j for j in self.jobs if j.name == name)

    def only(self, patterns: list[str]) -> Graph:
        """The jobs whose names match a pattern (``fnmatch``); every job they wait for and
        leave out must be complete."""
        chosen = [j for j in self.jobs if any(fnmatch(j.name, p) for p in patterns)]
        if not chosen:
            raise ConfigError(f"--only {' '.join(patterns)}: no job of the graph matches")
        names = {j.name for j in chosen}
        skipped = self.skipped()
        for job in chosen:
            missing = [d for d in job.deps if d not in names and not skipped[d]]
            if missing:
                raise ConfigError(f"--only: {job.name!r} needs {', '.join(missing)} first")
        jobs = [replace(j, deps=tuple(d for d in j.deps if d in names)) for j in chosen]
        return Graph(jobs, self.profile, self.settings)

    def skipped(self) -> dict[str, bool]:
        """Per job: complete, and so is every job it depends on (a rerun skips it)."""
        out: dict[str, bool] = {}
        for job in self.jobs:
            out[job.name] = job.complete() and all(out[d] for d in job.deps)
        return out


def fresh(out: Path, *inputs: Path) -> bool:
    """``out`` exists and is newer than every input (``train.sh``'s up-to-date rule)."""
    if not out.is_file():
        return False
    t = out.stat().st_mtime_ns
    return all(p.is_file() and t > p.stat().st_mtime_ns for p in inputs)


def _done_markers(folder: Path, phases: list[str]) -> list[Path]:
    return [folder / p / "DONE.json" for p in phases]


@dataclass(frozen=True)
class _Stage:
    """One trained stage of a family: its recipe and where its outputs go."""

    family: str
    stage: str
    recipe: StageRecipe
    root: Path

    def pretrain_markers(self) -> list[Path]:
        return _done_markers(self.root / "pretrain", [p.name for p in self.recipe.pretrain])

    def fold_markers(self, k: int) -> list[Path]:
        return _done_markers(self.root / f"fold_{k}", [p.name for p in self.recipe.phases])

    def markers(self) -> list[Path]:
        out = self.pretrain_markers()
        for k in self.recipe.folds:
            out += self.fold_markers(k)
        return out


def _all_exist(paths: list[Path]) -> Callable[[], bool]:
    return lambda: all(p.is_file() for p in paths)


def _fresh_after(out: Path, markers: list[Path]) -> Callable[[], bool]:
    return lambda: fresh(out, *markers)


class _Builder:
    """Adds the jobs of ``train.sh``'s steps to a list, in order."""

    def __init__(
        self,
        settings: Settings,
        profile: str,
        profile_args: list[str],
        budget_args: list[str],
        split_folds: bool,
    ) -> None:
        self.settings = settings
        self.profile = profile
        self.profile_args = profile_args
        self.budget_args = budget_args
        self.split_folds = split_folds
        self.jobs: list[Job] = []
        self.pred = settings.predictions_dir
        self.probs = self.pred / "probs" / "test"

    def add(self, job: Job) -> Job:
        self.jobs.append(job)
        return job

    def stage(self, family: str, stage: str, after: list[Job]) -> None:
        """Train a stage, validate it out of fold, predict the competition test tiles."""
        recipe = resolve_recipe(None, family, stage, self.profile)
        st = _Stage(family, stage, recipe, stage_dir(self.settings, recipe))
        base = ("train", "--family", family, "--stage", stage)
        tail = ("--verbose", "0", *self.profile_args, *self.budget_args)
        needs = tuple(j.name for j in after)
        inputs = tuple(p for j in after for p in j.outputs if j.kind == "pseudo")
        trains: list[Job] = []
        if not self.split_folds:
            trains.append(
                self.add(
                    Job(
                        f"train {family} {stage}",
                        f"train {family} {stage}",
                        "train",
                        (*base, "--all-folds", *tail),
                        inputs,
                        (st.root,),
                        needs,
                        True,
                        _all_exist(st.markers()),
                    )
                )
            )
        else:
            fold_needs = needs
            if recipe.pretrain:
                pre = self.add(
                    Job(
                        f"pretrain {family} {stage}",
                        f"pretrain {family} {stage} (pseudo-labels, all folds)",
                        "pretrain",
                        (*base, "--pretrain-only", *tail),
                        inputs,
                        (st.root / "pretrain",),
                        needs,
                        True,
                        _all_exist(st.pretrain_markers()),
                    )
                )
                trains.append(pre)
                fold_needs = (pre.name,)
            for k in recipe.folds:
                trains.append(
                    self.add(
                        Job(
                            f"train {family} {stage} fold {k}",
                            f"train {family} {stage} fold {k}",
                            "train",
                            (*base, "--fold", str(k), *tail),
                            inputs,
                            (st.root / f"fold_{k}",),
                            fold_needs,
                            True,
                            _all_exist(st.pretrain_markers() + st.fold_markers(k)),
                        )
                    )
                )
        trained = tuple(j.name for j in trains)
        markers = st.markers()
        stage_args = ("--family", family, "--stage", stage)
        oof = probs_path(self.settings, "oof", family, stage)
        self.add(
            Job(
                f"validate {family} {stage}",
                f"validate {family} {stage} (out-of-fold)",
                "validate",
                ("predict", *stage_args, "--set", "oof", *self.profile_args),
                tuple(markers),
                (oof,),
                trained,
                True,
                _fresh_after(oof, markers),
            )
        )
        test = probs_path(self.settings, "test", family, stage)
        self.add(
            Job(
                f"predict {family} {stage}",
                f"predict the competition test tiles with {family} {stage}",
                "predict",
                ("predict", *stage_args, "--competition-test", *self.profile_args),
                tuple(markers),
                (test,),
                trained,
                True,
                _fresh_after(test, markers),
            )
        )

    def blend(self, rnd: int, bes_stage: str, phalanx_stage: str) -> Job:
        """``train.sh``'s blend_round: b.e.s. 0.5 + phalanx min-max 0.5."""
        out = self.probs / f"round{rnd}_blend.h5"
        bes = self.probs / f"bes_{bes_stage}.h5"
        phalanx = self.probs / f"phalanx_{phalanx_stage}.h5"
        csv = self.pred / f"round{rnd}_prediction.csv"
        return self.add(
            Job(
                f"blend round {rnd}",
                f"round {rnd} blend (b.e.s. 0.5 + phalanx min-max 0.5)",
                "blend",
                (
                    "ensemble",
                    str(bes),
                    str(phalanx),
                    "--weights",
                    "0.5",
                    "0.5",
                    "--out",
                    str(csv),
                    "--out-probs",
                    str(out),
                ),
                (bes, phalanx),
                (out, csv),
                (f"predict bes {bes_stage}", f"predict phalanx {phalanx_stage}"),
                False,
                lambda: fresh(out, bes, phalanx),
                skip_note=f"up to date: {out}",
            )
        )

    def pseudo(self, rnd: int, name: str, rule: str | None = None) -> Job:
        """``train.sh``'s pseudo: the round's blend -> ``pseudo/round<r>_<name>``."""
        from saltseg.post.pseudo import is_complete

        rule = rule or name
        source = self.probs / f"round{rnd}_blend.h5"
        out_rel = f"pseudo/round{rnd}_{name}"
        out = self.pred / out_rel
        # Networks trained for minutes (tiny, demo) are rarely confident: keep enough
        # pseudo-labels (the most confident tiles) for the next round to train on.
        extra = ("--min-tiles", "48") if self.profile in ("tiny", "demo") else ()
        return self.add(
            Job(
                f"pseudo round {rnd} {name}",
                f"round {rnd} pseudo-labels, {rule} rule",
                "pseudo",
                ("pseudo", str(source), "--rule", rule, "--out", out_rel, *extra),
                (source,),
                (out / PSEUDO_CSV,),
                (f"blend round {rnd}",),
                False,
                lambda: is_complete(out, source, rule),
            )
        )


def build_graph(
    settings: Settings,
    profile: str,
    until: int = 3,
    *,
    profile_args: list[str] | None = None,
    budget_args: list[str] | None = None,
    split_folds: bool = False,
) -> Graph:
    """The jobs of ``train.sh``'s rounds 1..``until`` (the cpu profile: one phalanx stage).

    ``profile_args``/``budget_args`` are passed on to the commands as given (``--profile``,
    ``--budget-minutes``); ``split_folds``: one training job per fold (and pretraining)."""
    if until not in (1, 2, 3):
        raise ConfigError(f"--until must be 1, 2 or 3, not {until}")
    b = _Builder(settings, profile, profile_args or [], budget_args or [], split_folds)
    if profile == "cpu":
        b.stage("phalanx", "stage1", [])
        return Graph(b.jobs, profile, settings)
    original = profile == "full"  # the original's fold slices and all 18,000 tiles
    b.stage("bes", "stage1", [])
    b.stage("phalanx", "stage1", [])
    b.blend(1, "stage1", "stage1")
    round1 = [b.pseudo(1, "bes"), b.pseudo(1, "phalanx", "phalanx_slices" if original else None)]
    if until >= 2:
        b.stage("bes", "stage2", round1)
        b.stage("phalanx", "stage2", round1)
        b.blend(2, "stage2", "stage2")
        round2 = [b.pseudo(2, "all", "all_tiles" if original else None)]
        if until >= 3:
            b.stage("phalanx", "stage3", round2)
    return Graph(b.jobs, profile, settings)


def job_score(job: Job) -> float | None:
    """A finished job's validation score: a fold's last phase's best, a stage's out-of-fold."""
    try:
        if job.kind == "train":
            dones = sorted(job.outputs[0].glob("*/DONE.json"), key=lambda p: p.stat().st_mtime)
            return float(json.loads(dones[-1].read_text())["best_score"]) if dones else None
        if job.kind == "validate":
            import h5py

            with h5py.File(job.outputs[0], "r") as f:
                return float(json.loads(f.attrs["meta"])["score"])
    except (OSError, KeyError, ValueError):
        return None
    return None
