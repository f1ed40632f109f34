"""On-disk flow cache in the peers' format (int16, value = 10 x displacement in pixels, H x W x 2 as (x, y)).

Each pair is one `.npy` file named by a hash of everything that determines it: dataset identity, the two frames,
the size and the estimator. Files are written atomically, so an interrupted run never leaves a broken entry.
Beside each, a small `.sum` file holds the digest and shape of what was written: an entry whose bytes or shape
no longer match (another file copied over it, a disk error, a run killed between the two writes) reads as
damaged, and the flow is computed again instead of being used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from stpl.atomic import atomic_write, write_text
from stpl.errors import StplError

INT16_SCALE = 10.0


def encode_flow(flow: np.ndarray) -> np.ndarray:
    """float [H,W,2] pixels -> int16 x10 (0.1 px resolution, saturating at ±3276.7 px)."""
    scaled = np.round(np.asarray(flow, dtype=np.float32) * INT16_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def decode_flow(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.float32) / INT16_SCALE


def read_flow_file(path: str | Path) -> np.ndarray:
    """Read a peers'-format flow file (int16 x10 .npy, H x W x 2) as float32 pixels."""
    path = Path(path)
    try:
        stored = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise StplError(f"cannot read flow file {path}: {err}") from None
    if stored.ndim != 3 or stored.shape[-1] != 2:
        raise StplError(f"flow file {path} has shape {stored.shape}, expected H x W x 2")
    return decode_flow(stored) if stored.dtype == np.int16 else stored.astype(np.float32)


def write_flow_file(path: str | Path, flow: np.ndarray) -> None:
    """Atomic write in the peers' format."""
    encoded = encode_flow(flow)

    def write(temporary: str) -> None:
        with open(temporary, "wb") as stream:
            np.save(stream, encoded)

    atomic_write(path, write)


def frame_digest(frame: np.ndarray) -> str:
    """A short digest of a frame's pixels (BLAKE2b; ~0.2 ms for 320x240 RGB)."""
    return hashlib.blake2b(np.ascontiguousarray(frame).tobytes(), digest_size=8).hexdigest()


class FlowCache:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()
        self.damaged: list[Path] = []  # entries found damaged by `get` (they are computed again)

    @staticmethod
    def key(
        dataset_id: str, current: str, previous: str, size: tuple[int, int], estimator: str, content: str = ""
    ) -> str:
        """`content`: a digest of the two frames' pixels (`frame_digest`), so that another copy of a data set
        with the same frame names but other images never reuses this one's flow."""
        text = "|".join((dataset_id, current, previous, f"{size[0]}x{size[1]}", estimator, content))
        return hashlib.sha1(text.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}_int16_x10.npy"

    def sum_path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.sum"

    def get(self, key: str, size: tuple[int, int] | None = None) -> np.ndarray | None:
        """The flow [H,W,2] of an entry, or None when there is none or it is damaged (its digest or shape, or
        `size` when given, do not match; the damaged path is added to `self.damaged`): compute it again then."""
        path = self.path(key)
        if not path.is_file():
            return None
        problem, stored = self._check(key, size)
        if problem:
            self.damaged.append(path)
            return None
        return decode_flow(stored)

    def _check(self, key: str, size: tuple[int, int] | None) -> tuple[str, np.ndarray | None]:
        try:
            stored = np.load(self.path(key), allow_pickle=False)
            record = json.loads(self.sum_path(key).read_text())
        except (OSError, ValueError) as err:  # unreadable, not .npy, no or bad .sum (JSONDecodeError)
            return f"unreadable ({err})", None
        expected_shape = [*size, 2] if size is not None else record.get("shape")
        shape = list(stored.shape)
        if stored.dtype != np.int16 or shape != record.get("shape") or shape != expected_shape:
            return f"shape {list(stored.shape)} {stored.dtype}, expected {expected_shape} int16", None
        if _digest(stored) != record.get("blake2b"):
            return "its contents do not match the digest written with it", None
        return "", stored

    def put(self, key: str, flow: np.ndarray) -> None:
        encoded = encode_flow(flow)
        write_flow_file(self.path(key), flow)
        record = {"blake2b": _digest(encoded), "shape": list(encoded.shape)}
        write_text(self.sum_path(key), json.dumps(record))  # second: an entry without it reads as damaged

    def clear(self) -> tuple[int, int]:
        """Delete the cache's entries (and what killed writes left among them); anything else in the folder stays.
        Returns the files removed and their bytes."""
        files, size = 0, 0
        if not self.directory.is_dir():
            return files, size
        for pattern in ("??/*_int16_x10.npy", "??/*.sum", "??/.*.tmp"):
            for path in self.directory.glob(pattern):
                if path.is_file():
                    size += path.stat().st_size
                    path.unlink()
                    files += 1
        for folder in self.directory.glob("??"):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        return files, size


def _digest(stored: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(stored).tobytes(), digest_size=16).hexdigest()
