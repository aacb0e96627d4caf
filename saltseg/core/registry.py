"""The plugin registry: families, networks, adapters, augmentations, losses, pseudo-label rules,
maps of the original published weights.

Every provider, the core's own built-ins included, registers through the ``saltseg.plugins``
entry point group (``pyproject.toml``): each entry names a ``register(registry)`` function
that adds named entries to groups. A third model family is a package with such a function
and one entry point line in its own metadata; no core file changes.

Entries are objects, or ``"module:attribute"`` strings imported on first use, so that
registering stays cheap (no Keras import) and the command line starts fast. Plugins are
loaded on the first lookup.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from saltseg.core.errors import ConfigError

ENTRY_POINT_GROUP = "saltseg.plugins"
GROUPS = {
    "families": "family",
    "models": "model",
    "adapters": "adapter",
    "augmentations": "augmentation",
    "losses": "loss",
    "pseudo_rules": "pseudo-label rule",
    "weight_maps": "original-weights map",
}
"""Registry groups and the singular used in messages."""


@dataclass(frozen=True)
class Family:
    """A model family: where its recipes live and the settings key of its weights folder.

    ``minmax_blend``: its test probabilities are min-max normalised before blending (what
    the original did to the phalanx predictions).
    """

    name: str
    configs_dir: Path
    weights_key: str
    default_weights_dir: str
    minmax_blend: bool = False
    description: str = ""


def resolve(target: Any) -> Any:
    """An entry's object: ``"module:attribute"`` strings are imported, others returned."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


class Registry:
    """Named entries per group, filled by the plugins of :data:`ENTRY_POINT_GROUP`."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
        self._loaded = False
        self._loading = False

    def add(self, group: str, name: str, entry: Any) -> None:
        """Register ``entry`` as ``name`` in ``group``; a name is registered once."""
        if group not in self._entries:
            raise ValueError(f"unknown registry group {group!r}; groups: {', '.join(GROUPS)}")
        if name in self._entries[group]:
            raise ValueError(f"{group}: {name!r} is registered twice")
        self._entries[group][name] = entry

    def load(self) -> None:
        """Call every plugin's ``register(registry)`` once."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
            if not eps:
                raise ConfigError(
                    f"no saltseg plugins found (entry point group {ENTRY_POINT_GROUP!r}): "
                    "install the project first (make setup, or pip install -e .)"
                )
            for ep in eps:
                register: Callable[[Registry], None] = ep.load()
                register(self)
            self._loaded = True
        finally:
            self._loading = False

    def names(self, group: str) -> list[str]:
        """Registered names of ``group``, in registration order."""
        self.load()
        return list(self._entries[group])

    def get(self, group: str, name: str) -> Any:
        """The entry ``name`` of ``group`` (imported if given as a string)."""
        self.load()
        entries = self._entries[group]
        if name not in entries:
            known = ", ".join(entries) or "none"
            raise ValueError(f"unknown {GROUPS[group]} {name!r}; known: {known}")
        entry = entries[name]
        if isinstance(entry, str):
            entry = entries[name] = resolve(entry)
        return entry

    def items(self, group: str) -> Iterator[tuple[str, Any]]:
        """``(name, entry)`` of every entry of ``group`` (entries imported)."""
        for name in self.names(group):
            yield name, self.get(group, name)


REGISTRY = Registry()
"""The process-wide registry."""


def get_family(name: str) -> Family:
    """The registered :class:`Family` called ``name`` (a :class:`ConfigError` if none)."""
    try:
        return REGISTRY.get("families", name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def family_names() -> list[str]:
    """Names of the registered families."""
    return REGISTRY.names("families")
