from __future__ import annotations

from pathlib import Path

import pytest

from saltseg.core.atomic import atomic_open, atomic_write_text


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


def test_final_file_has_normal_permissions(tmp_path: Path) -> None:
    import os

    atomic_write_text(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")
    assert os.stat(tmp_path / "a.txt").st_mode == os.stat(tmp_path / "b.txt").st_mode
