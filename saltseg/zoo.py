"""Registry of the named networks (full and tiny) and the ``saltseg models`` command.

Each :class:`ModelSpec` knows its family, input size, adapter and how to build itself.
The ``*-tiny`` entries share the code of the full networks with a small ``width`` and one
unit per encoder stage: they are for CPU tests and demos, not for results. The ``*-cpu``
entries (same code, sizes in :data:`CPU_SIZES`) are the networks of the ``cpu`` profile;
like the tiny ones they count as small networks (``tiny=True``: not the originals).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keras is imported lazily so that the CLI starts fast
    import keras

TINY_WIDTH = 16
TINY_DEPTHS = (1, 1, 1, 1)
# Networks of the ``cpu`` profile (name -> (full network, its size)), chosen by measurement
# on 2 CPU cores (see README, "CPU profile", and bench/cpu_budget.py): the profile's
# network, and a smaller one that does better under budgets of less than about 20 minutes.
CPU_SIZES: dict[str, tuple[str, dict[str, Any]]] = {
    "phalanx-v5-cpu": ("phalanx-v5", {"width": 32, "depths": (2, 2, 2, 2), "stem": "3x3/2"}),
    "phalanx-v5-cpu-small": (
        "phalanx-v5",
        {"width": 32, "depths": (1, 1, 1, 1), "stem": "3x3/2"},
    ),
}


def _build_bes(**kwargs: Any) -> keras.Model:
    from bes.model import build_bes

    return build_bes(**kwargs)


def _build_phalanx(**kwargs: Any) -> keras.Model:
    from phalanx.model import build_phalanx

    return build_phalanx(**kwargs)


@dataclass(frozen=True)
class ModelSpec:
    """A named network: ``build(**overrides)`` returns a fresh ``keras.Model``.

    ``main_output``: the segmentation output used for prediction; ``output_kind``:
    ``"sigmoid"`` (probabilities) or ``"logits"`` for that output.
    """

    name: str
    family: str
    input_size: int
    adapter: str
    builder: Callable[..., keras.Model]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    main_output: str = "prediction"
    output_kind: str = "sigmoid"
    tiny: bool = False
    description: str = ""

    def build(self, **overrides: Any) -> keras.Model:
        """Build the network (``overrides`` replace the registered keyword arguments)."""
        return self.builder(**{**self.kwargs, **overrides})


def _registry() -> dict[str, ModelSpec]:
    tiny = {"width": TINY_WIDTH, "depths": TINY_DEPTHS}
    specs: list[ModelSpec] = [
        ModelSpec(
            "bes",
            "bes",
            224,
            "bes-224",
            _build_bes,
            {"input_size": 224},
            description="U-Net, ResNeXt50 encoder, scSE transposed-conv decoder",
        ),
    ]
    phalanx = {
        "v4": (256, "phalanx-256", "logits", "U-ResNet34 + FPA + hypercolumn (stage 1)"),
        "v3": (256, "phalanx-256", "fused", "v4 + dropout 0.4, deep supervision (stage 2)"),
        "v5": (128, "phalanx-128", "logits", "pad-only 128 input, 3x3/1 stem (stage 3)"),
    }
    for variant, (size, adapter, main, text) in phalanx.items():
        specs.append(
            ModelSpec(
                f"phalanx-{variant}",
                "phalanx",
                size,
                adapter,
                _build_phalanx,
                {"variant": variant},
                main_output=main,
                output_kind="logits",
                description=text,
            )
        )
    tiny_specs = [
        ModelSpec(
            f"{s.name}-tiny",
            s.family,
            s.input_size,
            s.adapter,
            s.builder,
            {**s.kwargs, **tiny, "name": f"{s.name.replace('-', '_')}_tiny"},
            main_output=s.main_output,
            output_kind=s.output_kind,
            tiny=True,
            description=f"tiny {s.name} (width {TINY_WIDTH}, 1 unit per stage) for tests",
        )
        for s in specs
    ]
    by_name = {s.name: s for s in specs}
    cpu_specs = [
        ModelSpec(
            name,
            by_name[base].family,
            by_name[base].input_size,
            by_name[base].adapter,
            by_name[base].builder,
            {**by_name[base].kwargs, **size, "name": name.replace("-", "_")},
            main_output=by_name[base].main_output,
            output_kind=by_name[base].output_kind,
            tiny=True,  # a small CPU network, not one of the original networks
            description=f"{base} (width {size['width']}, units {list(size['depths'])}, "
            f"{size.get('stem', 'its')} stem) for the cpu profile",
        )
        for name, (base, size) in CPU_SIZES.items()
    ]
    return {s.name: s for s in [*specs, *tiny_specs, *cpu_specs]}


MODELS: dict[str, ModelSpec] = _registry()


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name``."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}") from None


def _output_shapes(model: keras.Model) -> dict[str, list[int | None]]:
    names = model.output_names if hasattr(model, "output_names") else []
    shapes = {}
    outputs = model.outputs
    for i, t in enumerate(outputs):
        key = names[i] if i < len(names) else t.name
        shapes[key] = list(t.shape)
    return shapes


def describe_models(names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Build each named network (all by default) and describe it: ``name``, ``family``,
    ``input_size``, ``adapter``, ``params``, ``trainable_params``, ``outputs``
    (name -> shape), ``main_output``, ``tiny``."""
    import keras

    rows = []
    for name in list(MODELS) if names is None else list(names):
        spec = get_model_spec(name)
        model = spec.build()
        trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
        rows.append(
            {
                "name": spec.name,
                "family": spec.family,
                "input_size": spec.input_size,
                "adapter": spec.adapter,
                "params": int(model.count_params()),
                "trainable_params": trainable,
                "outputs": _output_shapes(model),
                "main_output": spec.main_output,
                "tiny": spec.tiny,
            }
        )
        del model
        keras.backend.clear_session()
    return rows


def format_models_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`describe_models` rows."""
    lines = [
        "| name | family | input | adapter | params | trainable | outputs |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        outs = ", ".join(f"{k} {tuple(v[1:])}" for k, v in r["outputs"].items())
        lines.append(
            f"| {r['name']} | {r['family']} | {r['input_size']} | {r['adapter']} "
            f"| {r['params']:,} | {r['trainable_params']:,} | {outs} |"
        )
    return "\n".join(lines)


def cmd_models(args: argparse.Namespace) -> int:
    """``saltseg models``: list the networks with parameter counts and input sizes."""
    names = list(getattr(args, "names", None) or [])
    if getattr(args, "tiny", False):
        names = names or [n for n, s in MODELS.items() if s.tiny]
    elif getattr(args, "full", False):
        names = names or [n for n, s in MODELS.items() if not s.tiny]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"unknown model(s): {', '.join(unknown)}; choose from {', '.join(MODELS)}")
        return 2
    rows = describe_models(names or None)
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
    else:
        print(format_models_table(rows))
    return 0


def add_models_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``models`` sub-command on an ``argparse`` sub-parsers object."""
    parser = subparsers.add_parser(
        "models",
        help="list the networks with parameter counts and input sizes",
        description="Build each registered network and list its family, input size, "
        "adapter, parameter count and outputs.",
    )
    parser.add_argument("names", nargs="*", help="model names (default: all)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--tiny", action="store_true", help="only the tiny test networks")
    group.add_argument("--full", action="store_true", help="only the full-size networks")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=cmd_models)
    return parser
