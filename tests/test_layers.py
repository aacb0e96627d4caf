"""The import rule: layers point one way, no cycles, families are plugins.

    core -> config -> data -> nets -> infer -> train -> post -> report -> cli

A module imports only from its own layer or the ones before it (imports inside functions
count too). Prediction (``infer``) never imports training. The families (``bes/``,
``phalanx/``) and the core's own entries (``saltseg/builtins.py``) are plugins: they may use
core, config, data and nets, and no core module imports them (they register through the
``saltseg.plugins`` entry points).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("saltseg", "bes", "phalanx")
LAYERS = ("core", "config", "data", "nets", "infer", "train", "post", "report", "cli")
PLUGIN_MAX = LAYERS.index("nets")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Project modules ``name`` imports (anywhere in the file)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[: len(name.split(".")) - node.level + int(is_pkg)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer(name: str) -> int | str:
    """Layer index of a core module, or ``"plugin"`` / ``"top"``."""
    parts = name.split(".")
    if parts[0] in ("bes", "phalanx") or name == "saltseg.builtins":
        return "plugin"
    if name in ("saltseg", "saltseg.__main__"):
        return 0 if name == "saltseg" else "top"
    return LAYERS.index(parts[1])


def test_every_core_module_has_a_layer() -> None:
    for name in MODULES:
        layer(name)  # raises ValueError for a module outside the layers


def test_no_import_cycles() -> None:
    graphlib.TopologicalSorter(GRAPH).static_order()  # raises CycleError on a cycle


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name: str) -> None:
    mine = layer(name)
    for target in sorted(GRAPH[name]):
        theirs = layer(target)
        if mine == "top":
            continue
        if theirs == "plugin":
            same_family = target.split(".")[0] == name.split(".")[0] != "saltseg"
            assert same_family, f"{name} imports the plugin {target}: use the registry"
            continue
        if mine == "plugin":
            assert theirs <= PLUGIN_MAX, f"plugin {name} imports {target} ({LAYERS[theirs]})"
            continue
        assert theirs != "top" and theirs <= mine, (
            f"{name} ({LAYERS[mine]}) imports {target} ({LAYERS[theirs]}): "
            f"layers go {' -> '.join(LAYERS)}"
        )


def test_the_rule_catches_a_wrong_import(tmp_path: Path) -> None:
    """The check above can fail: an infer module importing training is refused."""
    bad = tmp_path / "bad.py"
    bad.write_text("from saltseg.train.stage import train_stage\n")
    imported = _imports("saltseg.infer.bad", bad)
    assert imported == {"saltseg.train.stage"}
    assert layer("saltseg.train.stage") > layer("saltseg.infer.bad")


def test_families_are_registered_not_imported() -> None:
    from saltseg.core.registry import REGISTRY

    assert {"bes", "phalanx"} <= set(REGISTRY.names("families"))
    core = [n for n in MODULES if layer(n) != "plugin"]
    for name in core:
        assert not any(t.split(".")[0] in ("bes", "phalanx") for t in GRAPH[name]), name
