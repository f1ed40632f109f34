"""A lock per run folder, so that two processes never write into the same folder at once.

`stpl bench` processes on disjoint seeds may share one --out; two on the same seed (or two `stpl adapt` runs with
the same --out) would otherwise interleave their checkpoints. The lock is an OS lock (`fcntl.flock`) on the file
`.lock` in the folder: the kernel grants it to one process only and drops it when that process ends, however it
ends, so there are no stale locks to take over and no race in taking them. The file also names the holder (pid
and host) for the message a second process gets. A lock file written on another host is left alone (its holder
may be alive there, where this host's kernel cannot see it).
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from stpl.errors import StplError

LOCK_NAME = ".lock"
_HELD: set[int] = set()  # descriptors of the locks this process holds


def close_inherited_locks() -> None:
    """In a forked child (a data-loader worker): close the lock descriptors inherited from the parent. An flock
    belongs to the open file, shared by every copy of the descriptor, so a worker that outlives a killed parent
    would otherwise keep the folder locked until it notices; closing its copy leaves the parent's lock as it is."""
    for descriptor in list(_HELD):
        with suppress(OSError):
            os.close(descriptor)
    _HELD.clear()


def _holder(lock: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file, or None when it is unreadable."""
    try:
        pid, host = lock.read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _in_use(folder: Path, lock: Path) -> StplError:
    holder = _holder(lock)
    who = "another process" if holder is None else f"process {holder[0]} on {holder[1]}"
    return StplError(
        f"{folder} is in use by {who} (lock file {lock}). Run parallel jobs on disjoint seeds or methods, or wait"
    )


def _acquire(folder: Path, lock: Path) -> int:
    """An open descriptor of `lock` holding its flock; raises StplError when another process holds it."""
    while True:
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        except FileNotFoundError:  # a refused run removed the (empty) folder just now: make it again
            folder.mkdir(parents=True, exist_ok=True)
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise _in_use(folder, lock) from None
        # The holder before us removes the file on release: if we locked a file that is no longer the one at
        # this path, a newcomer could lock the new one too, so start again on whatever the path holds now.
        try:
            same = os.stat(lock).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return descriptor
        os.close(descriptor)


def _name_holder(descriptor: int, lock: Path, text: str) -> None:
    """Write who holds the lock into its file (for the message another process gets); a full disk is one line."""
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, text.encode())
    except OSError as err:
        raise StplError(f"cannot write lock file {lock}: {err.strerror or err}") from None


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Create `folder` if needed and hold its lock while the block runs; clear error if another process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    holder, here = _holder(lock), socket.gethostname()
    if holder is not None and holder[1] != here:
        raise StplError(
            f"{folder} is locked by process {holder[0]} on host {holder[1]} (lock file {lock}); if no run there is "
            "using the folder, delete the lock file"
        )
    descriptor = _acquire(folder, lock)
    _HELD.add(descriptor)
    try:
        _name_holder(descriptor, lock, f"{os.getpid()} {here}\n")
        yield
    finally:
        lock.unlink(missing_ok=True)  # before the release, so a waiting process re-checks the path (above)
        _HELD.discard(descriptor)
        os.close(descriptor)
