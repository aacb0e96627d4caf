"""Reliability corpus, outputs: full disk, killed and concurrent runs, changed inputs after a
finished run. Each case checks the exit code, that the message names the path, that no
traceback is printed, and that the previous outputs are byte-identical afterwards."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from reliability_kit import (
    FakePredictor,
    Project,
    assert_clear_error,
    enospc,
    new_project,
    run_cli,
    tree_bytes,
    write_tile,
)

from saltseg.core import atomic
from saltseg.core.errors import DataError, OutputError
from saltseg.core.lock import acquire, lock_path, locked, release
from saltseg.data.probs import ProbWriter, partial_path, read_probs, write_probs


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return new_project(tmp_path, monkeypatch)


def _predict(p: Project, capsys, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, *p.predict_args(*extra))


# --------------------------------------------------------------------------- full disk


def test_full_disk_during_prediction_keeps_previous_file(project: Project, capsys, monkeypatch):
    assert _predict(project, capsys)[0] == 0
    before = tree_bytes(project.predictions)
    write_tile(project.tiles / "t3.png", 99)  # a changed tile: the rerun must recompute
    monkeypatch.setattr(h5py.Dataset, "__setitem__", enospc)
    rc, _, err = _predict(project, capsys, "--chunk", "2")
    assert_clear_error(rc, err, str(project.probs), "No space left")
    after = tree_bytes(project.predictions)
    assert {k: v for k, v in after.items() if "partial" not in k} == before


def test_full_disk_at_rename_leaves_no_final_file(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "p.h5"
    w = ProbWriter(out, ["a", "b"], {"x": 1})
    w.write(0, np.zeros((2, 101, 101), np.float32))

    def replace(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError, match=str(out)):
        w.close()
    assert not out.exists()


def test_silently_lost_rows_are_caught_before_the_rename(tmp_path: Path, monkeypatch) -> None:
    """The original failure: a full disk dropped the maps but the header said "complete"."""
    out = tmp_path / "p.h5"
    write_probs(out, ["a", "b"], np.full((2, 101, 101), 0.7, np.float32), {"v": 1})
    before = out.read_bytes()
    w = ProbWriter(out, ["a", "b"], {"v": 2})
    w.write(0, np.full((2, 101, 101), 0.9, np.float32))
    w._file["prob"][1] = 0  # the bytes that never reached the disk
    with pytest.raises(OutputError, match="failed its check"):
        w.close()
    assert out.read_bytes() == before and not partial_path(out).exists()


def test_corrupt_finished_file_is_refused_and_recomputed(project: Project, capsys) -> None:
    assert _predict(project, capsys)[0] == 0
    with h5py.File(project.probs, "r+") as f:
        f["prob"][2, 0, 0] ^= 1
    with pytest.raises(DataError, match="checksum"):
        read_probs(project.probs)
    calls = FakePredictor.calls
    rc, out, _ = _predict(project, capsys)
    assert rc == 0 and "up to date" not in out and FakePredictor.calls > calls
    read_probs(project.probs)


@pytest.mark.parametrize("what", ["csv", "text", "weights"])
def test_full_disk_on_atomic_writes_keeps_previous(tmp_path: Path, monkeypatch, what: str):
    target = tmp_path / ("best.weights.h5" if what == "weights" else "out.csv")
    target.write_bytes(b"previous good output")
    monkeypatch.setattr(os, "fsync", enospc)  # the data never reaches the disk
    with pytest.raises(OutputError) as exc:
        if what == "csv":
            with atomic.atomic_open(target, "w") as fh:
                fh.write("new")
        elif what == "text":
            atomic.atomic_write_text(target, "x" * 10)
        else:
            atomic.atomic_write_with(target, lambda tmp: tmp.write_bytes(b"new weights"))
    assert str(target) in str(exc.value) and "No space left" in str(exc.value)
    assert target.read_bytes() == b"previous good output"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_verify_failure_keeps_previous(tmp_path: Path) -> None:
    target = tmp_path / "rows.csv"
    target.write_text("old\n")

    def verify(tmp: Path) -> None:
        if tmp.read_text().count("\n") != 3:
            raise DataError(f"{tmp}: expected 3 rows")

    with pytest.raises(DataError), atomic.atomic_path(target, verify=verify) as tmp:
        tmp.write_text("a\nb\n")
    assert target.read_text() == "old\n" and len(list(tmp_path.iterdir())) == 1


def test_full_disk_during_ensemble_keeps_previous_csv(project: Project, capsys, monkeypatch):
    assert _predict(project, capsys)[0] == 0
    csv = project.predictions / "test_prediction.csv"
    ens = ["--settings", str(project.settings), "ensemble", str(project.probs), "--minmax", "none"]
    assert run_cli(capsys, *ens)[0] == 0
    before = tree_bytes(project.predictions)
    monkeypatch.setattr(os, "fsync", enospc)
    rc, _, err = run_cli(capsys, *ens, "--threshold", "0.2")
    assert_clear_error(rc, err, str(csv))
    assert tree_bytes(project.predictions) == before


def test_full_disk_during_pseudo_labels_keeps_previous_folder(project, capsys, monkeypatch):
    assert _predict(project, capsys)[0] == 0
    args = ["--settings", str(project.settings), "pseudo", str(project.probs), "--rule", "all"]
    assert run_cli(capsys, *args, "--out", "pseudo/r1")[0] == 0
    folder = project.predictions / "pseudo" / "r1"
    before = tree_bytes(folder)
    assert "DONE.json" in before and any(k.startswith("masks/") for k in before)
    monkeypatch.setattr("cv2.imwrite", lambda *a, **k: enospc())
    rc, _, err = run_cli(capsys, *args, "--out", "pseudo/r1", "--force", "--threshold", "0.3")
    assert_clear_error(rc, err, str(folder))
    assert tree_bytes(folder) == before
    assert [p.name for p in folder.parent.iterdir()] == ["r1"]  # no staging folder left


def test_predictions_dir_that_is_a_file(project: Project, capsys) -> None:
    project.predictions.write_text("not a folder")
    rc, _, err = _predict(project, capsys)
    assert_clear_error(rc, err, str(project.predictions), "not a folder")
    assert project.predictions.read_text() == "not a folder"


# --------------------------------------------------------------------------- killed runs


def test_killed_prediction_resumes_and_keeps_previous(project: Project, capsys, monkeypatch):
    assert _predict(project, capsys)[0] == 0
    before = project.probs.read_bytes()
    write_tile(project.tiles / "t0.png", 42)
    real = FakePredictor.predict

    def dies_on_second_chunk(self, images, folds, flip_tta=True, progress=None):
        if FakePredictor.calls >= 1:
            raise KeyboardInterrupt
        return real(self, images, folds, flip_tta, progress)

    monkeypatch.setattr(FakePredictor, "predict", dies_on_second_chunk)
    FakePredictor.calls = 0
    rc, _, err = _predict(project, capsys, "--chunk", "2")
    assert rc == 130 and "Traceback" not in err
    assert project.probs.read_bytes() == before  # previous complete file untouched
    with h5py.File(partial_path(project.probs), "r") as f:
        assert int(f.attrs["rows_done"]) == 2
    monkeypatch.setattr(FakePredictor, "predict", real)
    rc, out, _ = _predict(project, capsys, "--chunk", "2")
    assert rc == 0 and "resuming at tile 2" in out
    m = read_probs(project.probs)
    assert m.q[0].tobytes() != read_probs_bytes(before)[0]


def read_probs_bytes(h5: bytes) -> list[bytes]:
    import io

    with h5py.File(io.BytesIO(h5), "r") as f:
        return [row.tobytes() for row in f["prob"][()]]


# --------------------------------------------------------------------------- concurrent runs


def test_second_run_on_same_output_stops_and_names_the_first(project: Project, capsys) -> None:
    assert _predict(project, capsys)[0] == 0
    write_tile(project.tiles / "t1.png", 7)
    lock = lock_path(project.probs)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = {"pid": holder.pid, "host": os.uname().nodename, "command": "saltseg predict X"}
        lock.write_text(json.dumps(info))
        before = tree_bytes(project.predictions)
        rc, _, err = _predict(project, capsys)
        assert_clear_error(rc, err, str(project.probs), f"pid {holder.pid}", "saltseg predict X")
        assert tree_bytes(project.predictions) == before
    finally:
        holder.kill()
        holder.wait()
    rc, _, err = _predict(project, capsys)  # the holder is dead: its stale lock is taken over
    assert rc == 0 and "took over" in err and not lock.exists()


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    with locked(out) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        other = {"pid": os.getpid(), "host": "elsewhere"}
        with pytest.raises(OutputError, match="another run"):
            acquire(out)
        lock.write_text(json.dumps(other))  # a lock of another host: never taken over
        with pytest.raises(OutputError, match="elsewhere"):
            acquire(out)
        release(lock)  # not ours any more: left alone
        assert lock.exists()
        lock.unlink()
    assert not lock_path(out).exists()


# --------------------------------------------------------------------------- changed inputs


def test_reuse_is_keyed_by_content(project: Project, capsys) -> None:
    assert _predict(project, capsys)[0] == 0
    first = read_probs(project.probs)
    assert len(first.meta["tiles_sha256"]) == 64
    rc, out, _ = _predict(project, capsys)
    assert rc == 0 and "up to date" in out
    os.utime(project.tiles / "t4.png", (1, 1))  # touched, same bytes: still reused
    assert "up to date" in _predict(project, capsys)[1]

    write_tile(project.tiles / "t4.png", 123)  # one tile's PNG replaced by another picture
    rc, out, _ = _predict(project, capsys)
    assert rc == 0 and "up to date" not in out
    second = read_probs(project.probs)
    assert second.meta["tiles_sha256"] != first.meta["tiles_sha256"]
    assert not np.array_equal(second.q[4], first.q[4])
    assert np.array_equal(second.q[:4], first.q[:4])

    snap = project.weights / "fold_0" / "cycles" / "snapshot_3.weights.h5"
    stat = snap.stat()
    snap.write_bytes(b"\x07" * 64)  # same size and mtime, other weights
    os.utime(snap, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    rc, out, _ = _predict(project, capsys)
    assert rc == 0 and "up to date" not in out
    rc, out, _ = _predict(project, capsys, "--no-tta")  # a setting that changes the result
    assert rc == 0 and "up to date" not in out
