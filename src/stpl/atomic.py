"""Atomic file writes: every file a command leaves behind is written to a temporary file beside its target,
flushed to disk and renamed into place, so a failed write (full disk, no permission, a kill) leaves the earlier
file whole, or none. Write errors become one `StplError` line naming the path."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stpl.errors import StplError


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _flush_to_disk(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call write(temporary_path), then replace `path` with it; a failure leaves the old file (or none) intact."""
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        write(temporary)
        _flush_to_disk(temporary)
        os.chmod(temporary, _default_mode())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(temporary, path)
    except BaseException as err:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        reason = _os_reason(err)
        if reason is not None:
            raise StplError(f"cannot write {path}: {reason}") from None
        raise


TEMPORARY_PATTERN = ".*.tmp"  # what atomic_write's temporary files look like (".<name>.<random>.tmp")


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files that writes killed midway (SIGKILL, power loss) left in `folder`; only for a
    folder the caller holds the lock of, where no write can be in progress. Returns what was removed."""
    removed = []
    for path in Path(folder).glob(TEMPORARY_PATTERN):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _os_reason(err: BaseException) -> str | None:
    """The OS's words for a failed write (also when a library wrapped them), else None."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    text = str(err)
    for words in ("No space left on device", "Permission denied", "Disk quota exceeded", "Read-only file system"):
        if words in text:
            return words
    return None


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda temporary: Path(temporary).write_text(text))


def strict_json(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None, so that strict JSON readers accept it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    return value


def write_json(path: str | Path, data: Any) -> None:
    """Strict JSON (null for NaN: an absent class has no IoU), indented, written atomically."""
    write_text(path, json.dumps(strict_json(data), indent=2, allow_nan=False))
