"""The full recipe's wall time on N GPUs: the Ray job graph list-scheduled, job times estimated.

Usage: python bench/ray_critical_path.py [--total-days 16] [--pseudo-tiles 6000]

No training: each fold or pretraining job's cost is its recipe's (full profile) epochs x
tiles per epoch (folds: 4/5 of 4,000 train tiles, pseudo-label phases: ``--pseudo-tiles``,
times the recipe's epoch passes) / its network's measured training speed (the tiles/s of
bench/RESULTS.md's training_throughput, relative speeds only), scaled so that the whole
recipe takes ``--total-days`` on one GPU (the authors' 16 days on a GTX 1080 Ti). Prediction
jobs take 3.5 h / 38 networks each per network (the authors' prediction time), blends and
pseudo-labels 5 minutes. Jobs start as soon as the jobs they wait for end, longest first.
"""

from __future__ import annotations

import argparse
import heapq
import tempfile
from pathlib import Path

from saltseg.cli.jobs import Graph, Job, build_graph
from saltseg.config.recipe import PhaseConfig, resolve_recipe
from saltseg.config.settings import load_settings

TILES_PER_S = {"bes": 4.7, "phalanx-v4": 1.3, "phalanx-v3": 1.1, "phalanx-v5": 2.4}
FOLD_TILES = 3200


def phase_cost(phase: PhaseConfig, tiles_per_s: float, pseudo: int) -> float:
    epochs = phase.epochs if phase.cosine is None else sum(phase.cosine.cycle_epochs)
    tiles = {"folds": FOLD_TILES, "pseudo": pseudo}.get(phase.data, FOLD_TILES + pseudo)
    return epochs * tiles * phase.epoch_passes / tiles_per_s


def raw_costs(graph: Graph, pseudo: int) -> dict[str, float]:
    """Relative cost of every training job (seconds at the CPU-measured speeds)."""
    out = {}
    for job in graph.jobs:
        if job.kind not in ("train", "pretrain"):
            continue
        family, stage = job.command[2], job.command[4]
        recipe = resolve_recipe(None, family, stage, "full")
        speed = TILES_PER_S[recipe.model]
        phases = recipe.pretrain if job.kind == "pretrain" else recipe.phases
        out[job.name] = sum(phase_cost(p, speed, pseudo) for p in phases)
    return out


def job_hours(graph: Graph, total_days: float, pseudo: int) -> dict[str, float]:
    raw = raw_costs(graph, pseudo)
    scale = total_days * 24 / sum(raw.values())
    per_network = 3.5 / 38
    hours = {}
    for job in graph.jobs:
        if job.name in raw:
            hours[job.name] = raw[job.name] * scale
        elif job.kind in ("validate", "predict"):
            family, stage = job.command[2], job.command[4]
            recipe = resolve_recipe(None, family, stage, "full")
            hours[job.name] = per_network * len(recipe.folds) * len(recipe.predict or [1]) * 2
        else:
            hours[job.name] = 5 / 60
    return hours


def schedule(jobs: list[Job], hours: dict[str, float], gpus: int) -> float:
    """Makespan of a greedy list schedule: a ready job takes the first free GPU (blends and
    pseudo-labels need none)."""
    ends: dict[str, float] = {}
    free = [0.0] * gpus
    pending = list(jobs)
    while pending:
        ready = [j for j in pending if all(d in ends for d in j.deps)]
        ready.sort(key=lambda j: -hours[j.name])
        job = ready[0]
        start = max([ends[d] for d in job.deps], default=0.0)
        if job.gpu:
            slot = heapq.heappop(free)
            start = max(start, slot)
            heapq.heappush(free, start + hours[job.name])
        ends[job.name] = start + hours[job.name]
        pending.remove(job)
    return max(ends.values())


def critical_path(jobs: list[Job], hours: dict[str, float]) -> float:
    ends: dict[str, float] = {}
    for job in jobs:
        ends[job.name] = max([ends[d] for d in job.deps], default=0.0) + hours[job.name]
    return max(ends.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total-days", type=float, default=16.0)
    ap.add_argument("--pseudo-tiles", type=int, default=6000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "SETTINGS.json"
        path.write_text("{}")
        graph = build_graph(load_settings(path), "full", split_folds=True)
    hours = job_hours(graph, args.total_days, args.pseudo_tiles)
    fold = {k: v for k, v in hours.items() if " fold 0" in k or k.startswith("pretrain")}
    print("| job (full recipe) | estimated GPU hours |")
    print("|---|---:|")
    for name, h in fold.items():
        print(f"| {name} | {h:.1f} |")
    path = critical_path(graph.jobs, hours)
    print(f"| critical path (one job after another, unlimited GPUs) | {path:.1f} |")
    print()
    print("| GPUs | estimated wall time (days) |")
    print("|---:|---:|")
    for n in (1, 2, 4, 5, 8, 10, 16, 25):
        print(f"| {n} | {schedule(graph.jobs, hours, n) / 24:.1f} |")


if __name__ == "__main__":
    main()
