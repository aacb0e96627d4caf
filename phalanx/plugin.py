"""Registers the phalanx family with the core (entry point ``saltseg.plugins: phalanx``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saltseg.core.registry import Family, Registry
from saltseg.data.adapters import Adapter
from saltseg.nets.zoo import ModelSpec

VARIANTS = {  # variant -> (input size, adapter, main output, description)
    "v4": (256, "phalanx-256", "logits", "U-ResNet34 + FPA + hypercolumn (stage 1)"),
    "v3": (256, "phalanx-256", "fused", "v4 + dropout 0.4, deep supervision (stage 2)"),
    "v5": (128, "phalanx-128", "logits", "pad-only 128 input, 3x3/1 stem (stage 3)"),
}
# Networks of the ``cpu`` profile (name -> (full network, its size)), chosen by measurement
# on 2 CPU cores (docs/cpu-profile.md, bench/cpu_budget.py): the profile's network, and a
# smaller one that does better under budgets of less than about 20 minutes.
CPU_SIZES: dict[str, tuple[str, dict[str, Any]]] = {
    "phalanx-v5-cpu": ("phalanx-v5", {"width": 32, "depths": (2, 2, 2, 2), "stem": "3x3/2"}),
    "phalanx-v5-cpu-small": (
        "phalanx-v5",
        {"width": 32, "depths": (1, 1, 1, 1), "stem": "3x3/2"},
    ),
}


def model_specs() -> list[ModelSpec]:
    """The full networks, their tiny variants and the cpu profile's sizes."""
    full = [
        ModelSpec(
            f"phalanx-{variant}",
            "phalanx",
            size,
            adapter,
            "phalanx.model:build_phalanx",
            {"variant": variant},
            main_output=main,
            output_kind="logits",
            description=text,
        )
        for variant, (size, adapter, main, text) in VARIANTS.items()
    ]
    by_name = {s.name: s for s in full}
    cpu = [
        by_name[base].variant(
            name,
            f"{base} (width {size['width']}, units {list(size['depths'])}, "
            f"{size.get('stem', 'its')} stem) for the cpu profile",
            **size,
        )
        for name, (base, size) in CPU_SIZES.items()
    ]
    # The demo profile's networks: the tiny ones at 128 input (v4/v3 pad-only like v5);
    # v5 also with the cpu profile's stride-2 stem.
    demo = [
        s.demo_variant(128, "phalanx-128", **({"stem": "3x3/2"} if s.name.endswith("v5") else {}))
        for s in full
    ]
    return [*full, *(s.tiny_variant() for s in full), *cpu, *demo]


def register(registry: Registry) -> None:
    """The family, its adapters, networks, augmentation, loss, pseudo-label rule and the map
    of its original weights."""
    registry.add(
        "families",
        "phalanx",
        Family(
            "phalanx",
            Path(__file__).resolve().parent / "configs",
            weights_key="PHALANX_WEIGHTS_DIR",
            default_weights_dir="phalanx/weights",
            minmax_blend=True,
            description="phalanx: U-ResNet34 with scSE, FPA and hypercolumn (PyTorch originally)",
        ),
    )
    registry.add(
        "adapters", "phalanx-256", Adapter("phalanx-256", 256, 202, 27, 27, "edge", "ramp")
    )
    registry.add(
        "adapters", "phalanx-128", Adapter("phalanx-128", 128, None, 13, 14, "edge", "ramp")
    )
    for spec in model_specs():
        registry.add("models", spec.name, spec)
    registry.add("augmentations", "phalanx", "phalanx.augment:phalanx_augmentation")
    registry.add("losses", "deep_supervision", "phalanx.losses:deep_supervision_losses")
    registry.add("pseudo_rules", "phalanx", "phalanx.pseudo:phalanx_rule")
    registry.add("pseudo_rules", "phalanx_slices", "phalanx.pseudo:phalanx_slices_rule")
    registry.add("weight_maps", "phalanx", "phalanx.weights_map:ORIGINAL")
