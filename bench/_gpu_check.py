"""The measurements of ``bench/gpu_check.sh`` (run by a person with a GPU; not a CPU bench).

For each full-size network: ``--steps`` training steps at its recipe's batch on real train
tiles of ``$TGS_DATA`` in float32 and in the GPU's mixed policy (``precision: auto``,
:func:`saltseg.config.precision.gpu_policy`): steady tiles/s (the first two steps, tracing
and autotuning, left out), peak GPU memory, and whether the loss fell (mean of the last
five steps below the mean of the first five: the same few batches are repeated, so a
working step must fit them). Then prediction with flip TTA through the Keras backend as
``saltseg predict`` runs it on a GPU (mixed policy, XLA), and the original 38-model
ensemble's time for 18,000 tiles from the b.e.s. and phalanx v5 rates. Prints one table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = ("bes", "phalanx-v3", "phalanx-v4", "phalanx-v5")
ORIGINAL = {"bes": 20, "phalanx-v5": 18}
TEST_TILES = 18000


def recipe_batch(name: str) -> int:
    """The first phase's batch of the first recipe that trains ``name``."""
    from saltseg.config.recipe import load_stage

    for family in ("bes", "phalanx"):
        for path in sorted((ROOT / family / "configs").glob("*.yaml")):
            recipe = load_stage(family, path.stem)
            if recipe.model == name:
                return recipe.phases[0].batch_size
    raise SystemExit(f"no recipe trains {name}")


def _peak_mb() -> float:
    import tensorflow as tf

    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


def _train(name: str, policy: str, x: Any, y: Any, batch: int, steps: int) -> dict[str, Any]:
    import keras
    import numpy as np
    import tensorflow as tf

    from saltseg.infer.backends import main_model
    from saltseg.infer.networks import build_model, main_output
    from saltseg.nets.zoo import get_model_spec

    keras.backend.clear_session()
    tf.config.experimental.reset_memory_stats("GPU:0")
    spec = get_model_spec(name)
    model = build_model(spec, policy=policy)
    net = main_model(model, main_output(spec, model))
    net.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        jit_compile=False,
    )
    losses, times = [], []
    n_batches = max(1, len(x) // batch)
    for i in range(steps):
        lo = (i % n_batches) * batch
        t0 = time.perf_counter()
        loss = net.train_on_batch(x[lo : lo + batch], y[lo : lo + batch])
        times.append(time.perf_counter() - t0)
        losses.append(float(np.asarray(loss).reshape(-1)[0]))
    steady = times[2:] or times
    return {
        "tiles_per_s": batch / float(np.median(steady)),
        "peak_mb": _peak_mb(),
        "loss_first": float(np.mean(losses[:5])),
        "loss_last": float(np.mean(losses[-5:])),
    }


def _predict(name: str, images: Any, batch: int) -> float:
    """Tiles/s with flip TTA through the Keras backend in the GPU's mixed policy, XLA."""
    import keras

    from saltseg.data.adapters import get_adapter
    from saltseg.infer.backends import KerasForward, keras_policy
    from saltseg.infer.networks import build_model, main_output, predict_probabilities
    from saltseg.nets.zoo import get_model_spec

    keras.backend.clear_session()
    spec = get_model_spec(name)
    model = build_model(spec, policy=keras_policy("keras-bf16"))
    fwd = KerasForward(model, main_output(spec, model), batch)
    adapter = get_adapter(spec.adapter)
    predict_probabilities(fwd, images[:batch], adapter, None, True, batch, flip_tta=True)
    t0 = time.perf_counter()
    predict_probabilities(fwd, images, adapter, None, True, batch, chunk=1024, flip_tta=True)
    return len(images) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--predict-tiles", type=int, default=1024)
    parser.add_argument("--names", nargs="*", default=list(NETWORKS))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from saltseg.config.precision import gpu_capability, resolve_precision
    from saltseg.data.adapters import get_adapter
    from saltseg.data.tiles import TGSDirectory
    from saltseg.nets.zoo import get_model_spec

    capability = gpu_capability()
    if capability is None:
        raise SystemExit("no GPU visible to TensorFlow: this check needs one")
    mixed = resolve_precision("auto")
    train = TGSDirectory(Path(os.environ["TGS_DATA"])).load_train(verify_rle=False)
    keep = ~train.black & (train.masks.reshape(len(train), -1).mean(axis=1) > 0.05)
    images, masks = train.images[keep], train.masks[keep]
    rows, tta = [], {}
    for name in args.names:
        spec = get_model_spec(name)
        adapter = get_adapter(spec.adapter)
        batch = recipe_batch(name)
        x = adapter.forward_images(images[: 4 * batch]).astype(np.float32)
        y = adapter.forward_masks(masks[: 4 * batch]).astype(np.float32)
        for policy in ("float32", mixed):
            r = _train(name, policy, x, y, batch, args.steps)
            rows.append((name, policy, batch, r))
            print(f"{name} {policy}: {r}", file=sys.stderr, flush=True)
        tta[name] = _predict(name, images[: args.predict_tiles], 64)
        print(f"{name} predict: {tta[name]:.0f} tiles/s (flip TTA)", file=sys.stderr, flush=True)
    print(f"GPU compute capability {capability[0]}.{capability[1]}; mixed policy: {mixed}\n")
    print(
        "| network | precision | batch | train tiles/s | peak GPU MB | loss first 5 -> last 5 "
        "| falls | predict tiles/s (flip TTA, mixed, XLA) |"
    )
    print("|---|---|---:|---:|---:|---|---|---:|")
    for name, policy, batch, r in rows:
        falls = "yes" if r["loss_last"] < r["loss_first"] else "**no**"
        pred = f"{tta[name]:.0f}" if policy == mixed else ""
        print(
            f"| {name} | {policy} | {batch} | {r['tiles_per_s']:.1f} | {r['peak_mb']:,.0f} "
            f"| {r['loss_first']:.3f} -> {r['loss_last']:.3f} | {falls} | {pred} |"
        )
    if all(n in tta for n in ORIGINAL):
        per_tile = sum(k / tta[n] for n, k in ORIGINAL.items())
        print(
            f"\n38-model original ensemble with flip TTA: {TEST_TILES:,} tiles in "
            f"{TEST_TILES * per_tile / 60:.1f} min on this GPU"
        )
    return 0 if all(r["loss_last"] < r["loss_first"] for *_, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
