"""Training throughput of every network on this CPU (tiles/s through a train step).

Usage: python bench/training_throughput.py [--quick] [--steps 5]

Each network is built with its logits head, compiled with its recipe's loss and optimiser
and trained on random batches already in memory, in a fresh subprocess (peak memory per
network). The batch is the recipe's (b.e.s. 24, phalanx 18, phalanx-v5 64) for the full
networks and 8 for the tiny ones. ``--quick`` measures the tiny networks only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

NETWORKS = {
    # name: (loss, optimizer, full batch)
    "bes": ("lovasz_elu", "rmsprop", 24),
    "phalanx-v4": ("lovasz", "sgd", 18),
    "phalanx-v3": ("deep_supervision", "sgd", 18),
    "phalanx-v5": ("lovasz", "sgd", 64),
}


def worker(name: str, steps: int) -> dict:
    import keras
    import numpy as np

    from saltseg.nets.losses import get_loss
    from saltseg.nets.zoo import get_model_spec

    base = name.removesuffix("-tiny")
    loss, opt, batch = NETWORKS[base]
    if name.endswith("-tiny"):
        batch = 8
    spec = get_model_spec(name)
    model = spec.build(**({"head": "logits"} if spec.family == "bes" else {}))
    optimizer = (
        keras.optimizers.SGD(0.01, momentum=0.9, weight_decay=1e-4)
        if opt == "sgd"
        else keras.optimizers.RMSprop(1e-4)
    )
    model.compile(optimizer, loss=get_loss(loss))
    s = spec.input_size
    rng = np.random.default_rng(0)
    x = rng.random((batch, s, s, 3), dtype=np.float32)
    y = (rng.random((batch, s, s, 1)) > 0.5).astype(np.float32)
    if len(model.outputs) > 1:
        y = {k: y for k in model.output_names}
    model.train_on_batch(x, y)  # trace
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    dt = (time.perf_counter() - t0) / steps
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"name": name, "batch": batch, "step_s": dt, "tiles_s": batch / dt, "rss_mb": rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps)))
        return 0
    names = [f"{n}-tiny" for n in NETWORKS]
    if not args.quick:
        names += list(NETWORKS)
    print("| network | batch | s/step | tiles/s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        steps = args.steps if name.endswith("-tiny") else max(2, args.steps // 2)
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", name, "--steps", str(steps)],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            print(f"| {name} | failed: {proc.stderr.strip().splitlines()[-1]} | | | |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"| {r['name']} | {r['batch']} | {r['step_s']:.2f} | {r['tiles_s']:.1f} "
            f"| {r['rss_mb']:,.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
