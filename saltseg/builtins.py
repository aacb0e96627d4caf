"""The core's own registry entries (entry point ``saltseg.plugins: core``): the identity
augmentation, the shared losses and the ``all`` pseudo-label rule."""

from __future__ import annotations

from saltseg.core.registry import Registry


def register(registry: Registry) -> None:
    """Entries that belong to no family."""
    registry.add("augmentations", "none", "saltseg.data.augment:no_augmentation")
    registry.add("losses", "bce", "saltseg.nets.losses:BCELoss")
    registry.add("losses", "bce_dice", "saltseg.nets.losses:BCEDiceLoss")
    registry.add("losses", "lovasz", "saltseg.nets.losses:lovasz")
    registry.add("losses", "lovasz_elu", "saltseg.nets.losses:lovasz_elu")
    registry.add("pseudo_rules", "all", "saltseg.post.pseudo:select_all")
    registry.add("pseudo_rules", "all_tiles", "saltseg.post.pseudo:select_all_tiles")
