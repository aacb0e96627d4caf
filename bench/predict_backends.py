"""Prediction backends side by side, and the decision ``--backend auto`` predicts with.

For each network (b.e.s., phalanx v3/v4/v5 at full size, the cpu profile's network;
random-initialised weights unless ``--weights NETWORK=FILE`` gives trained ones: the speed
is the same, but only trained weights make the agreement check meaningful) in a fresh
subprocess: the float32 and bfloat16 matmul peaks measured just before (the machine is
shared: each network's share of peak is against the peak of its own minutes), then every
installed backend of :mod:`saltseg.infer.backends` (the exports built through the cache,
their time reported): one warm-up batch, ``--reps`` timed batches (median), tiles/s without
TTA, forward GFLOP per tile (Conv/Dense layers counted analytically) and achieved GFLOP/s as
a share of the peak of the precision the backend computes in. Each backend's masks are
compared with float32 Keras's on ``--agree-tiles`` real train tiles of ``$TGS_DATA``
(:func:`saltseg.infer.choice.agreement`), and the fastest agreeing backend, its batch and
threads are recorded in the decision file (:func:`saltseg.infer.choice.record_choice`)
unless ``--no-record``. Prints Markdown tables, with the original 38-model ensemble's time
for 18,000 tiles (flip TTA) on this CPU from the measured b.e.s. and phalanx v5 rates.

    python bench/predict_backends.py                      # every network
    python bench/predict_backends.py --names phalanx-v5-cpu --agree-tiles 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {"phalanx-v5-cpu": 32, "bes": 16, "phalanx-v5": 16, "phalanx-v4": 8, "phalanx-v3": 8}
"""Each network and the batch that suits it (memory: phalanx v3/v4 at 256x256 are large)."""
ORIGINAL = {"bes": 20, "phalanx-v5": 18}
"""The original ensemble: weight files per network (x2 for flip TTA)."""
TEST_TILES = 18000


def _peaks() -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "bench"))
    from cpu_budget import matmul_peak_gflops

    return {
        "float32": matmul_peak_gflops((1024, 2048), reps=3),
        "bfloat16": matmul_peak_gflops((1024, 2048), reps=3, dtype="bfloat16"),
    }


def _real_tiles(n: int) -> tuple[Any, Any]:
    import numpy as np

    from saltseg.data.tiles import TGSDirectory

    data = os.environ.get("TGS_DATA")
    if not data:
        raise SystemExit("set TGS_DATA to the real data (the agreement check needs real tiles)")
    train = TGSDirectory(Path(data)).load_train(verify_rle=False)
    idx = np.sort(np.random.default_rng(0).choice(len(train), min(n, len(train)), replace=False))
    return train.images[idx], train.masks[idx]


def _time(fwd: Any, x: Any, reps: int) -> float:
    """Median seconds of one batch (after one warm-up batch)."""
    import numpy as np

    fwd(x)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fwd(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _at_median(ref: Any, prob: Any) -> float:
    """Pixels identical at the reference's median probability: a random network's outputs
    sit on one side of 0.5, so this threshold is where its disagreements show."""
    import numpy as np

    t = float(np.median(ref))
    return float(((ref > t) == (prob > t)).mean())


def thread_candidates(cores: int) -> list[int]:
    """Thread counts the export backends are timed with: every core, one less, half of
    them (hyper-threads share a core), a quarter; the fastest is recorded."""
    return sorted({max(1, n) for n in (cores, cores - 1, cores // 2, cores // 4)}, reverse=True)


def _precision(backend: str, fwd: Any, policy: str) -> str:
    """The arithmetic a backend ran in: bfloat16 or float32."""
    if backend == "openvino":
        hint = str(fwd.compiled.get_property("INFERENCE_PRECISION_HINT"))
        return "bfloat16" if "bf16" in hint.lower() or "bfloat16" in hint.lower() else "float32"
    return "bfloat16" if "bfloat16" in policy else "float32"


def _worker(
    name: str,
    batch: int,
    reps: int,
    agree_tiles: int,
    work: Path,
    only: list[str] | None,
    trained: str | None = None,
) -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    from cpu_budget import forward_flops

    from saltseg.data.adapters import get_adapter
    from saltseg.infer.backends import BACKENDS, available, keras_policy, make_forward
    from saltseg.infer.choice import agreement
    from saltseg.infer.networks import (
        build_model,
        load_model_weights,
        main_output,
        predict_probabilities,
        save_weights,
    )
    from saltseg.nets.zoo import get_model_spec

    keras.utils.set_random_seed(0)
    spec = get_model_spec(name)
    ref_model = build_model(spec)
    gflop = forward_flops(ref_model) / 1e9
    weights = work / name / "best.weights.h5"
    weights.parent.mkdir(parents=True, exist_ok=True)
    if trained:
        load_model_weights(ref_model, Path(trained))
    save_weights(ref_model, weights)
    adapter = get_adapter(spec.adapter)
    images, truth = _real_tiles(agree_tiles)
    x = adapter.forward_images(images[:batch]).astype(np.float32)
    threads = os.cpu_count()
    peaks = _peaks()
    rows, ref_prob = {}, None
    for backend in BACKENDS:
        if not available(backend) or (only and backend not in only and backend != "keras"):
            continue
        policy = keras_policy(backend)
        model = ref_model if policy == "float32" else build_model(spec, policy=policy)
        load_model_weights(model, weights)
        output = main_output(spec, model)
        t0 = time.perf_counter()
        fwd = make_forward(backend, model, output, weights, batch, threads, lambda m: None)
        setup_s = time.perf_counter() - t0
        sec = _time(fwd, x, reps)
        used = threads
        if backend in ("openvino", "onnxruntime"):  # Keras: TensorFlow's pools, set at start
            for n in thread_candidates(threads or 1)[1:]:
                trial = make_forward(backend, model, output, weights, batch, n, lambda m: None)
                trial_s = _time(trial, x, reps)
                if trial_s < sec:
                    fwd, sec, used = trial, trial_s, n
        prob = predict_probabilities(fwd, images, adapter, None, True, batch)
        if ref_prob is None:
            ref_prob = prob
        agree = agreement(ref_prob, prob, truth)
        precision = _precision(backend, fwd, policy)
        tps = batch / sec
        rows[backend] = {
            "tiles_per_s": round(tps, 2),
            "gflops": round(gflop * tps, 1),
            "peak_share": round(gflop * tps / peaks[precision], 3),
            "precision": precision,
            "setup_s": round(setup_s, 1),
            "threads": used,
            "agrees": agree.agrees,
            "pixels_identical": round(agree.pixels_identical, 6),
            "score_delta": round(agree.score_delta, 5),
            "identical_at_median": round(_at_median(ref_prob, prob), 6),
        }
        print(f"{name} {backend}: {rows[backend]}", file=sys.stderr, flush=True)
        del fwd
    return {
        "name": name,
        "batch": batch,
        "threads": threads,
        "gflop": round(gflop, 2),
        "peaks": {k: round(v) for k, v in peaks.items()},
        "tiles": len(images),
        "backends": rows,
    }


def _run_one(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
    tiles = args.agree_tiles if name.endswith(("-cpu", "-tiny")) else args.full_agree_tiles
    cmd += ["--reps", str(args.reps), "--agree-tiles", str(tiles or args.agree_tiles)]
    cmd += ["--work", str(work)]
    if args.backends:
        cmd += ["--backends", *args.backends]
    trained = dict(w.split("=", 1) for w in args.weights or []).get(name)
    if trained:
        cmd += ["--weights", f"{name}={Path(trained).resolve()}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: benchmark failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rate(tiles_per_s: float) -> str:
    return f"{tiles_per_s:.2f}" if tiles_per_s < 10 else f"{tiles_per_s:.1f}"


def format_tables(results: list[dict[str, Any]]) -> str:
    """The per-backend table, the decision per network and the ensemble's time."""
    from saltseg.infer.choice import fastest_agreeing

    lines = [
        "| network | GFLOP/tile | batch | backend | precision | tiles/s | GFLOP/s | share of peak "
        "| pixels identical | score delta | agrees | identical at median | export + load s "
        "| threads |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        for b, m in r["backends"].items():
            same = m.get("identical_at_median")
            at_median = "-" if same is None else f"{100 * same:.2f}%"
            lines.append(
                f"| {r['name']} | {r['gflop']:.2f} | {r['batch']} | {b} | {m['precision']} "
                f"| {_rate(m['tiles_per_s'])} | {m['gflops']:.0f} | {100 * m['peak_share']:.0f}% "
                f"| {100 * m['pixels_identical']:.3f}% | {m['score_delta']:.4f} "
                f"| {'yes' if m['agrees'] else 'no'} "
                f"| {at_median} | {m['setup_s']:.1f} | {m.get('threads', r['threads'])} |"
            )
    lines += [
        "",
        "| network | matmul peak float32 / bfloat16 GFLOP/s | agreement tiles | chosen "
        "| tiles/s vs float32 Keras |",
        "|---|---:|---:|---|---:|",
    ]
    chosen: dict[str, float] = {}
    for r in results:
        best = fastest_agreeing(r["backends"])
        tps = r["backends"][best]["tiles_per_s"]
        chosen[r["name"]] = tps
        ratio = tps / r["backends"]["keras"]["tiles_per_s"]
        lines.append(
            f"| {r['name']} | {r['peaks']['float32']} / {r['peaks']['bfloat16']} | {r['tiles']} "
            f"| {best} | {_rate(tps)} ({ratio:.2f}x) |"
        )
    if all(n in chosen for n in ORIGINAL):
        per_tile = sum(2 * k / chosen[n] for n, k in ORIGINAL.items())
        lines += [
            "",
            f"Original ensemble (20 b.e.s. + 18 phalanx v5 networks x 2 flips, about 1.9 TFLOP "
            f"per tile) with the chosen backends at this run's rates: {per_tile:.1f} s per tile, "
            f"**{TEST_TILES * per_tile / 3600:.1f} h for {TEST_TILES:,} tiles** on this CPU.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", nargs="*", default=list(NETWORKS), help="networks to run")
    parser.add_argument("--reps", type=int, default=3, help="timed batches per backend")
    parser.add_argument("--agree-tiles", type=int, default=1000, help="real tiles compared")
    parser.add_argument(
        "--full-agree-tiles", type=int, help="real tiles compared for the full-size networks"
    )
    parser.add_argument(
        "--backends", nargs="*", help="backends to measure (default: all installed; keras always)"
    )
    parser.add_argument(
        "--weights",
        nargs="*",
        metavar="NETWORK=FILE",
        help="trained weights (.weights.h5) for a network (default: random-initialised)",
    )
    parser.add_argument("--no-record", action="store_true", help="do not write the decision")
    parser.add_argument(
        "--json", type=Path, help="also write the measurements here (after each network)"
    )
    parser.add_argument(
        "--tables-from", type=Path, help="print the tables of a --json file, measuring nothing"
    )
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.worker:
        batch = NETWORKS.get(args.worker, 16)
        trained = dict(w.split("=", 1) for w in args.weights or []).get(args.worker)
        row = _worker(
            args.worker, batch, args.reps, args.agree_tiles, args.work, args.backends, trained
        )
        print(json.dumps(row))
        return 0
    from saltseg.infer.choice import choice_path, fastest_agreeing, record_choice

    if args.tables_from:
        print(format_tables(json.loads(args.tables_from.read_text(encoding="utf-8"))))
        return 0
    t0 = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="predict-backends-") as tmp:
        for name in args.names:
            r = _run_one(name, args, Path(tmp))
            results.append(r)
            if not args.no_record:
                best = r["backends"][fastest_agreeing(r["backends"])]
                threads = best.get("threads", r["threads"])
                record_choice(r["name"], r["backends"], r["batch"], threads, r["tiles"])
            if args.json:
                args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    trained = sorted(w.split("=", 1)[0] for w in args.weights or [])
    weights = f"trained weights for {', '.join(trained)}, " if trained else ""
    print(
        f"{os.cpu_count()} logical CPUs; {weights}random-initialised weights otherwise; "
        "tiles/s without TTA\n"
    )
    print(format_tables(results))
    decided = "" if args.no_record else f"; decisions recorded in {choice_path()}"
    print(f"\n_predict_backends.py: {time.perf_counter() - t0:.0f} s{decided}_")
    return 0


if __name__ == "__main__":
    sys.exit(main())
