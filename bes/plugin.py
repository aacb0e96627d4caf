"""Registers the b.e.s. family with the core (entry point ``saltseg.plugins: bes``)."""

from __future__ import annotations

from pathlib import Path

from saltseg.core.registry import Family, Registry
from saltseg.data.adapters import Adapter
from saltseg.nets.zoo import ModelSpec

BES = ModelSpec(
    "bes",
    "bes",
    224,
    "bes-224",
    "bes.model:build_bes",
    {"input_size": 224},
    description="U-Net, ResNeXt50 encoder, scSE transposed-conv decoder",
    logits_overrides={"head": "logits"},
)


def register(registry: Registry) -> None:
    """The family, its adapter, networks, augmentation, pseudo-label rule and the map of
    its original weights."""
    registry.add(
        "families",
        "bes",
        Family(
            "bes",
            Path(__file__).resolve().parent / "configs",
            weights_key="BES_WEIGHTS_DIR",
            default_weights_dir="bes/weights",
            description="b.e.s.: U-Net with a ResNeXt50 encoder (Keras in the original)",
        ),
    )
    registry.add("adapters", "bes-224", Adapter("bes-224", 224, 192, 16, 16, "reflect", "gray3"))
    # The demo's network works at 128: 101 -> resize 112 -> reflect pad (8, 8), as bes-224.
    registry.add("adapters", "bes-128", Adapter("bes-128", 128, 112, 8, 8, "reflect", "gray3"))
    for spec in (BES, BES.tiny_variant(), BES.demo_variant(128, "bes-128")):
        registry.add("models", spec.name, spec)
    registry.add("augmentations", "bes", "bes.augment:bes_augmentation")
    registry.add("pseudo_rules", "bes", "bes.pseudo:bes_rule")
    registry.add("weight_maps", "bes", "bes.weights_map:ORIGINAL")
