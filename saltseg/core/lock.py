"""One run per output: a lock file ``<output>.lock`` holding the owner's pid, host and command.

The lock is taken atomically (``O_CREAT | O_EXCL``). A second run on the same output stops
with an error naming the run that holds it; a lock left by a dead process on this host is
stale and taken over. A lock never deletes the output or another run's files.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from saltseg.core.atomic import ensure_folder, output_errors
from saltseg.core.errors import OutputError


def lock_path(output: str | os.PathLike[str]) -> Path:
    """The lock file of an output file or folder (beside it, hidden)."""
    out = Path(output)
    return out.with_name(f".{out.name}.lock")


def _owner() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv[:6]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_owner(lock: Path) -> dict[str, Any] | None:
    """The lock's owner, or ``None`` when the lock is gone (an unreadable lock: ``{}``)."""
    try:
        info = json.loads(lock.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def is_stale(info: dict[str, Any]) -> bool:
    """Held by a process of this host that no longer runs."""
    pid = info.get("pid")
    if info.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    return not _pid_alive(pid)


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "an unknown run (unreadable lock file)"
    return (
        f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')} "
        f"({info.get('command')})"
    )


def _try_create(lock: Path, info: dict[str, Any]) -> bool:
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:  # no fsync: a lock dies with its run
        json.dump(info, fh)
    return True


def _take_over(lock: Path, info: dict[str, Any]) -> None:
    """Move a stale lock aside (only if it is still the same stale one)."""
    aside = lock.with_name(f"{lock.name}.stale-{os.getpid()}")
    try:
        os.replace(lock, aside)
    except FileNotFoundError:
        return
    if read_owner(aside) != info:  # another run replaced it meanwhile: put it back
        os.replace(aside, lock)
        return
    aside.unlink(missing_ok=True)
    print(f"note: {lock}: took over the lock of a dead run ({_describe(info)})", file=sys.stderr)


def acquire(output: str | os.PathLike[str]) -> Path:
    """Take the lock of ``output``; an :class:`OutputError` names the run holding it."""
    lock = lock_path(output)
    ensure_folder(lock.parent)
    me = _owner()
    with output_errors(output):
        for _ in range(3):
            if _try_create(lock, me):
                return lock
            info = read_owner(lock)
            if info is None:
                continue
            if info and is_stale(info):
                _take_over(lock, info)
                continue
            break
    raise OutputError(
        f"{output}: another run is writing this output: {_describe(read_owner(lock) or {})}; "
        f"wait for it to finish (or, if it is dead on another machine, delete {lock})"
    )


def release(lock: Path) -> None:
    """Remove the lock if this process still owns it."""
    info = read_owner(lock)
    if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(output: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the lock of ``output`` for the block."""
    lock = acquire(output)
    try:
        yield lock
    finally:
        release(lock)
