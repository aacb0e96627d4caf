"""Named networks (:class:`ModelSpec`, registered by the families) and ``saltseg models``.

Each :class:`ModelSpec` knows its family, input size, adapter and how to build itself.
The ``*-tiny`` entries share the code of the full networks with a small ``width`` and one
unit per encoder stage: they are for CPU tests and demos, not for results. Other small
sizes (the ``*-cpu`` networks of the ``cpu`` profile) are :meth:`ModelSpec.variant` s;
like the tiny ones they count as small networks (``tiny=True``: not the originals).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from saltseg.core.registry import REGISTRY, resolve

if TYPE_CHECKING:  # keras is imported lazily so that the CLI starts fast
    import keras

TINY_WIDTH = 16
TINY_DEPTHS = (1, 1, 1, 1)


@dataclass(frozen=True)
class ModelSpec:
    """A named network: ``build(**overrides)`` returns a fresh ``keras.Model``.

    ``builder``: the function (or its ``"module:function"`` path, imported on first build);
    ``main_output``: the segmentation output used for prediction; ``output_kind``:
    ``"sigmoid"`` (probabilities) or ``"logits"`` for that output; ``logits_overrides``:
    the keyword arguments that make the network output logits (what training and
    prediction build: the losses and the prediction apply the sigmoid themselves).
    """

    name: str
    family: str
    input_size: int
    adapter: str
    builder: Callable[..., keras.Model] | str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    main_output: str = "prediction"
    output_kind: str = "sigmoid"
    tiny: bool = False
    description: str = ""
    logits_overrides: Mapping[str, Any] = field(default_factory=dict)

    def build(self, **overrides: Any) -> keras.Model:
        """Build the network (``overrides`` replace the registered keyword arguments)."""
        return resolve(self.builder)(**{**self.kwargs, **overrides})

    def variant(self, name: str, description: str, **kwargs: Any) -> ModelSpec:
        """The same network called ``name`` with other keyword arguments (a small network:
        ``tiny=True``, not one of the originals)."""
        merged = {**self.kwargs, **kwargs, "name": name.replace("-", "_")}
        return replace(self, name=name, kwargs=merged, tiny=True, description=description)

    def demo_variant(self, input_size: int, adapter: str, **kwargs: Any) -> ModelSpec:
        """``<name>-demo``: the tiny network at ``input_size`` (with its ``adapter``), for
        ``make demo``'s ``demo`` profile: a few minutes of CPU training learn its data."""
        tiny = self.tiny_variant()
        spec = tiny.variant(
            f"{self.name}-demo",
            f"tiny {self.name} at {input_size} input (width {TINY_WIDTH}) for the demo",
            input_size=input_size,
            **kwargs,
        )
        return replace(spec, input_size=input_size, adapter=adapter)

    def tiny_variant(self) -> ModelSpec:
        """``<name>-tiny``: width 16, one unit per encoder stage, for tests and the demo."""
        return self.variant(
            f"{self.name}-tiny",
            f"tiny {self.name} (width {TINY_WIDTH}, 1 unit per stage) for tests",
            width=TINY_WIDTH,
            depths=TINY_DEPTHS,
        )


class _Models(Mapping[str, ModelSpec]):
    """The registered networks by name (read from the plugin registry on each access)."""

    def _specs(self) -> dict[str, ModelSpec]:
        return dict(REGISTRY.items("models"))

    def __getitem__(self, name: str) -> ModelSpec:
        return self._specs()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY.names("models"))

    def __len__(self) -> int:
        return len(REGISTRY.names("models"))


MODELS: Mapping[str, ModelSpec] = _Models()
"""Every registered network (full, tiny and cpu-profile sizes), by name."""


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name]


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
