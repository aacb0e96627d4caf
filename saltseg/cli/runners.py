"""``saltseg run`` (what ``./train.sh`` calls): the job graph run step by step, or on Ray.

The sequential runner is ``train.sh`` as it always was: each job's command in order, with
its step line, the commands skipping their own finished work (the blend: ``up to date``),
stopping at the first failure with its exit code. The jobs run inside the runner's own
Python (TensorFlow is started once, not once per job: about 6 s a job) when the job
command is this Python's saltseg; another ``$SALTSEG`` program, or ``--processes``, runs
each job as its own process. ``--ray auto|ADDRESS`` hands the graph,
split per fold, to :mod:`saltseg.cli.ray_runner` (the only module that imports Ray).
``--dry-run`` prints the graph and what a run would skip.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from saltseg.cli.common import settings_from_args
from saltseg.cli.jobs import Graph, build_graph
from saltseg.config.settings import PROFILES, find_settings


def saltseg_command(settings_file: str, absolute: bool = False) -> list[str]:
    """The command a job runs: ``$SALTSEG`` (train.sh's choice) or this Python's saltseg;
    ``absolute``: its program and settings file as absolute paths (for other nodes)."""
    base = os.environ.get("SALTSEG", "").split() or [sys.executable, "-m", "saltseg"]
    if absolute:
        base[0] = os.path.abspath(base[0]) if os.sep in base[0] else base[0]
        settings_file = os.path.abspath(settings_file)
    return [*base, "--settings", settings_file]


Entry = Callable[[Sequence[str]], int]  # saltseg's main: argv -> exit status


def is_own_saltseg(command: list[str]) -> bool:
    """Whether ``command`` (:func:`saltseg_command`) runs this Python's saltseg."""
    base = command[: command.index("--settings")] if "--settings" in command else command
    if base == [sys.executable, "-m", "saltseg"]:
        return True
    own = Path(sys.executable).parent / "saltseg"
    return len(base) == 1 and own.is_file() and Path(base[0]).resolve() == own.resolve()


def run_in_process(entry: Entry, argv: list[str]) -> int:
    """One job's command through saltseg's ``main`` in this process; its exit status."""
    try:
        rc = entry(argv)
    except SystemExit as exc:  # argparse's usage errors
        rc = exc.code if isinstance(exc.code, int) else 2
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if "keras" in sys.modules:  # the next job starts from an empty graph
            sys.modules["keras"].backend.clear_session(free_memory=True)
    return rc


def run_sequential(graph: Graph, command: list[str], entry: Entry | None = None) -> int:
    """Every job in order, as ``train.sh`` ran them; the first failure's exit code.
    ``entry``: run the jobs through it in this process (else one process per job)."""
    for step, job in enumerate(graph.jobs, start=1):
        print(f"\n== [{step}] {job.title} ({time.strftime('%H:%M:%S', time.gmtime())})")
        if job.skip_note and job.complete():
            print(job.skip_note)
            continue
        sys.stdout.flush()
        if entry is not None:
            rc = run_in_process(entry, [*command[command.index("--settings") :], *job.command])
        else:
            rc = subprocess.run([*command, *job.command], check=False).returncode
        if rc:
            return rc
    return 0


def print_graph(graph: Graph, command: list[str]) -> None:
    """``--dry-run``: each job, whether it would run or be skipped, its needs and command."""
    skipped = graph.skipped()
    n = sum(skipped.values())
    print(
        f"job graph: {len(graph.jobs)} jobs, {n} complete (skipped), {len(graph.jobs) - n} to run"
    )
    width = max(len(j.name) for j in graph.jobs)
    for job in graph.jobs:
        state = "skip" if skipped[job.name] else "run "
        needs = ", ".join(job.deps) or "-"
        gpu = "gpu" if job.gpu else "cpu"
        print(f"  {state} {job.name:<{width}}  {gpu}  after: {needs}")
        print(f"         $ saltseg {' '.join(job.command)}")
    print(f"(commands run as: {' '.join(command)} ...)")


def _settings_label(args: argparse.Namespace) -> str:
    return args.settings or str(find_settings(None))


def cmd_run(args: argparse.Namespace) -> int:
    """Run ``train.sh``'s rounds: the job graph, sequentially or on a Ray cluster."""
    settings = settings_from_args(args)
    profile = args.profile or settings.PROFILE
    profile_args = ["--profile", args.profile] if args.profile else []
    budget = [] if args.budget_minutes is None else ["--budget-minutes", args.budget_minutes]
    graph = build_graph(
        settings,
        profile,
        args.until,
        profile_args=profile_args,
        budget_args=budget,
        split_folds=args.ray is not None,
    )
    if args.only:
        graph = graph.only(args.only)
    label = args.label
    command = saltseg_command(_settings_label(args), absolute=args.ray is not None)
    print(
        f"{label}: settings {_settings_label(args)}, profile {profile}, "
        f"predictions in {settings.predictions_dir}"
    )
    if args.dry_run:
        print_graph(graph, command)
        return 0
    if args.ray is None:
        own = not args.processes and is_own_saltseg(command)
        rc = run_sequential(graph, command, args.entry if own else None)
    else:
        from saltseg.cli.ray_runner import RayOptions, run_on_ray

        opts = RayOptions(args.ray, args.gpus_per_job, args.cpus_per_job, args.max_retries)
        rc = run_on_ray(graph, command, opts)
    if rc:
        return rc
    if profile == "cpu":
        print(
            f"\n{label}: done (cpu profile: one phalanx network). "
            "Predict with ./predict.sh --profile cpu"
        )
    elif args.until < 3:
        print(f"{label}: stopped after round {args.until} (--until {args.until})")
    else:
        print(f"\n{label}: done. Predict with ./predict.sh")
    return 0


def add_run_parser(sub: Any, entry: Entry) -> None:
    """``saltseg run``; ``entry``: saltseg's ``main``, which runs the jobs in process."""
    p = sub.add_parser(
        "run", help="the training rounds (what ./train.sh runs), step by step or on Ray"
    )
    p.add_argument("--profile", choices=PROFILES, help="default: PROFILE setting")
    p.add_argument("--until", type=int, choices=[1, 2, 3], default=3, help="last round")
    p.add_argument(
        "--budget-minutes", metavar="M", help="wall-clock budget per fold (saltseg train)"
    )
    p.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        help="run the jobs on a Ray cluster (auto: the running one, else a local one)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the job graph, run nothing")
    p.add_argument(
        "--processes",
        action="store_true",
        help="run each job in its own process (default: all in this one, TensorFlow started once)",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="PATTERN",
        help="only the jobs whose name matches (fnmatch, repeatable), e.g. 'train bes stage1 *'",
    )
    p.add_argument(
        "--gpus-per-job",
        type=float,
        metavar="N",
        help="GPUs per training/prediction job on Ray (default: 1 if the cluster has GPUs)",
    )
    p.add_argument(
        "--cpus-per-job", type=float, default=1.0, metavar="N", help="CPUs per job on Ray"
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=3,
        metavar="N",
        help="Ray retries of a job whose worker died",
    )
    p.add_argument("--label", default="saltseg run", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run, entry=entry)
