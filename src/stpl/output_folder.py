"""A result folder written as a unit: the files go into a temporary sibling folder, which replaces the old folder
only once they are all written.

    with written_whole(out, {"masks", "predict.json"}) as folder:
        ...  # write everything into `folder`

A failure or an interrupt at any point leaves the old `out` whole (or no `out`) and removes the temporary folder;
a new run never mixes with an old one. The swap is two renames (the old folder aside, the new one in), then the old
one is deleted; a run killed between the two renames is repaired by the next run, which puts the old folder back.

Writers of one `out` take turns through an OS lock (runlock.py) on a sibling folder `.<name>.lock`: a lock inside
`out` would be swapped away with it. Only a folder that is empty or holds nothing but the names a run writes is
replaced, so that `--out` naming a folder of one's own never deletes anything in it.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from stpl.errors import Interrupted, StplError
from stpl.runlock import LOCK_NAME, run_lock


def _cannot_write(out: Path, err: OSError) -> StplError:
    return StplError(f"cannot write {out}: {err.strerror or err}")


def _target(out: str | Path) -> Path:
    """`out` as an absolute path; a symbolic link is followed, so that the folder it names is replaced, not it."""
    out = Path(os.path.abspath(Path(out).expanduser()))
    return out.resolve() if out.is_symlink() else out


def _check_replaceable(out: Path, names: Collection[str]) -> None:
    """Refuse an `out` that is a file, holds files of its own, or whose old files could not be deleted."""
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise StplError(f"cannot write {out}: {os.strerror(errno.ENOTDIR)} (a file of that name exists)")
    entries = os.listdir(out)
    foreign = sorted(e for e in entries if e not in names and e != LOCK_NAME and not _temporary_file(e))
    if foreign:
        listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise StplError(f"{out} holds files that no earlier run wrote ({listed}): choose another folder, or empty it")
    for folder in [out, *(out / e for e in entries if (out / e).is_dir())]:
        if not os.access(folder, os.W_OK | os.X_OK):  # the old files are deleted after the swap
            raise StplError(f"cannot write {folder}: {os.strerror(errno.EACCES)}")


def _temporary_file(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")  # atomic.py's, left by a killed writer


def _siblings(out: Path, kind: str) -> list[Path]:
    prefix = f".{out.name}.{kind}-"
    return sorted(out.parent / name for name in os.listdir(out.parent) if name.startswith(prefix))


def _clear_leftovers(out: Path) -> None:
    """Remove what killed runs left beside `out` (with the lock held, no live writer has a folder there); if one was
    killed between the two renames of its swap, its old folder goes back in place."""
    for temporary in _siblings(out, "tmp"):
        shutil.rmtree(temporary)
    for old in _siblings(out, "old"):
        if os.path.lexists(out):
            shutil.rmtree(old)
        else:
            os.rename(old, out)


def _swap(temporary: Path, out: Path) -> None:
    if not os.path.lexists(out):
        os.rename(temporary, out)
        return
    aside = out.parent / f".{out.name}.old-{os.getpid()}"
    os.rename(out, aside)
    try:
        os.rename(temporary, out)
    except BaseException:
        os.rename(aside, out)
        raise
    try:
        shutil.rmtree(aside, ignore_errors=True)  # the new folder is in place: a file left here is removed next time
    except (KeyboardInterrupt, Interrupted) as err:  # a stop now must not read as if the output were lost
        said, code = (err.message, err.exit_code) if isinstance(err, Interrupted) else ("stopped by Ctrl-C", 130)
        raise Interrupted(f"{said} after {out} was written in full (the earlier output it replaced goes next time)",
                          code) from None  # fmt: skip


@contextmanager
def written_whole(out: str | Path, names: Collection[str]) -> Iterator[Path]:
    """A fresh temporary folder to write into; when the block ends without an error it replaces `out`.

    `names`: the entries a run writes in `out`; an existing `out` holding anything else is refused, never deleted.
    OS errors of the folder handling (no permission, a full disk) become one StplError line naming the path."""
    try:
        out = _target(out)
    except OSError as err:  # e.g. a parent folder this user may not enter
        raise _cannot_write(Path(out), err) from None
    _check_swappable(out)
    lock_folder = out.parent / f".{out.name}.lock"
    with ExitStack() as stack:
        stack.callback(_remove_if_empty, lock_folder)  # registered first, so it runs after the lock is released
        try:
            stack.enter_context(run_lock(lock_folder))
            _clear_leftovers(out)  # first: it may put an old folder back, which is then checked like any
            _check_replaceable(out, names)
            temporary = out.parent / f".{out.name}.tmp-{os.getpid()}"
            temporary.mkdir()
        except OSError as err:
            raise _cannot_write(out, err) from None
        try:
            yield temporary
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        try:
            _swap(temporary, out)  # puts the old folder back itself when the new one cannot go in
        except BaseException as err:
            shutil.rmtree(temporary, ignore_errors=True)
            if isinstance(err, OSError):
                raise _cannot_write(out, err) from None
            raise


def _check_swappable(out: Path) -> None:
    """The swap renames `out` and writes beside it: refuse, before any work, a mount point (it cannot be renamed,
    e.g. a docker volume) or a folder whose parent this user may not write (an admin-made folder in /data)."""
    if os.path.ismount(out):
        reason = "it is a mount point"
    elif out.parent.is_dir() and not os.access(out.parent, os.W_OK | os.X_OK):
        reason = f"its folder {out.parent} is not writable"
    else:
        return
    raise StplError(
        f"cannot write {out}: it is replaced as a whole and {reason}; give --out a new folder inside it, e.g. "
        f"{out / 'predictions'}"
    )


def _remove_if_empty(folder: Path) -> None:
    with suppress(OSError):  # not empty: another writer is taking its turn, the folder is its now
        folder.rmdir()
