"""A lock file per run folder, so that two processes never train into the same folder at once.

`stpl bench` processes on disjoint seeds may share one --out; two on the same seed (or two `stpl adapt` runs with
the same --out) would otherwise interleave their checkpoints. The lock holds the owner's pid and host; a lock left
by a process that died on this host is taken over, one from another host must be removed by hand.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stpl.errors import StplError

LOCK_NAME = ".lock"


def _holder(lock: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file, or None when it is unreadable."""
    try:
        pid, host = lock.read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: checks existence only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _try_create(lock: Path) -> bool:
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"{os.getpid()} {socket.gethostname()}\n")
    return True


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Create `folder` if needed and hold its lock while the block runs; clear error if another process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    if not _try_create(lock):
        holder = _holder(lock)
        here = socket.gethostname()
        if holder is None:
            raise StplError(f"{folder} has an unreadable lock file {lock}; delete it if no run is using the folder")
        if holder[1] != here or _alive(holder[0]):
            raise StplError(
                f"{folder} is in use by process {holder[0]} on {holder[1]} (lock file {lock}). Run parallel jobs "
                "on disjoint seeds or methods, or wait; if that process is gone, delete the lock file"
            )
        lock.unlink(missing_ok=True)  # left by a process that died on this host: take it over
        if not _try_create(lock):
            raise StplError(f"{folder} was locked by another process just now (lock file {lock})")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
