from __future__ import annotations

from pathlib import Path

import pytest

from saltseg.atomic import atomic_open, atomic_write_text


def test_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.csv"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["out.csv"]  # no temp left behind
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
