"""Where a split's frames, labels and flow live: in memory (numpy arrays) or on disk, read per batch.

`data.storage: disk` bounds memory by the batch instead of the split: frames and labels are written, as they are
decoded or generated, to a scratch file of fixed-size rows that is unlinked as soon as it is open (nothing is left
behind when a run stops, however it stops), and each batch reads its rows back with `pread`; DIS flow stays in the
flow cache (int16 files) and is read per batch. The arrays here answer the few operations `PairDataset` and its
users need (`shape`, `len`, iteration, integer and index-array reads), so the rest of the code does not know which
storage it has.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from stpl.config import DataConfig
from stpl.errors import StplError
from stpl.lazy_rows import LazyRows


class RowArray(Protocol):
    """What a split's frames, labels and flows must offer: a numpy array does."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __len__(self) -> int: ...

    def __getitem__(self, index, /) -> np.ndarray: ...


class DiskRows(LazyRows):
    """Rows of one shape and dtype in an unlinked scratch file (owning its descriptor), read with `pread` (no
    memory map: rows read once do not stay resident). Forked DataLoader workers share the open file, which pread
    never moves."""

    def __init__(self, descriptor: int, count: int, row_shape: tuple[int, ...], dtype: np.dtype):
        super().__init__(count, row_shape, dtype)
        self._descriptor = descriptor
        self._row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize

    def _read_into(self, rows: np.ndarray, out: np.ndarray) -> None:
        for position, row in enumerate(rows.tolist()):
            buffer = memoryview(out[position]).cast("B")
            if os.preadv(self._descriptor, [buffer], row * self._row_bytes) != self._row_bytes:
                raise OSError(f"short read of row {row} from the scratch file of a disk-stored split")

    def __del__(self) -> None:
        descriptor = getattr(self, "_descriptor", None)
        if descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(descriptor)

    def __reduce__(self):
        raise TypeError("a disk-stored split reads through an open scratch file: use fork (the Linux default)")


class RowSink:
    """Collects rows as they come: `add(rows)` any number of times, then `finish()` gives the array.

    directory None: rows are kept in memory and stacked (a numpy array). A directory: rows go straight to a scratch
    file there (see `DiskRows`), so the whole split is never in memory at once."""

    def __init__(self, directory: Path | None):
        self._directory = directory
        self._parts: list[np.ndarray] = []
        self._descriptor: int | None = None  # the scratch file, opened at the first rows
        self._finished = False
        self._count = 0
        self._row_shape: tuple[int, ...] | None = None
        self._dtype: np.dtype | None = None

    def add(self, rows: np.ndarray | Iterable[np.ndarray]) -> None:
        block = np.asarray(rows) if isinstance(rows, np.ndarray) else np.stack(list(rows))
        if self._row_shape is None:
            self._row_shape, self._dtype = block.shape[1:], block.dtype
        elif block.shape[1:] != self._row_shape or block.dtype != self._dtype:
            raise ValueError(f"rows {block.dtype} {block.shape[1:]} after {self._dtype} {self._row_shape}")
        if len(block) == 0:
            return
        if self._directory is None:
            self._parts.append(block)
        else:
            try:
                self._write(block)
            except OSError as err:
                raise StplError(
                    f"cannot write frames to data.storage_dir {self._directory}: {err.strerror or err} (set "
                    "data.storage_dir to a writable folder with room, or data.storage=memory)"
                ) from None
        self._count += len(block)

    def _write(self, block: np.ndarray) -> None:
        if self._descriptor is None:
            self._directory.mkdir(parents=True, exist_ok=True)
            self._descriptor, path = tempfile.mkstemp(dir=self._directory, prefix="rows-", suffix=".bin")
            os.unlink(path)  # the open descriptor keeps the data; nothing stays behind, however the run stops
        data = memoryview(np.ascontiguousarray(block)).cast("B")
        offset = self._count * data.nbytes // len(block)
        while data:  # a large write may be partial
            written = os.pwrite(self._descriptor, data, offset)
            data, offset = data[written:], offset + written

    def finish(self) -> np.ndarray | DiskRows:
        if self._row_shape is None:
            raise ValueError("no rows were added")
        if not self._parts and self._descriptor is None:  # only empty blocks came: no scratch file was opened
            return np.empty((0, *self._row_shape), self._dtype)
        if self._descriptor is None:
            return np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]  # one block: no copy
        self._finished = True  # the descriptor now belongs to the DiskRows
        return DiskRows(self._descriptor, self._count, self._row_shape, self._dtype)

    def __del__(self) -> None:
        # A build that stopped half-way (a missing label, too few frames) gives its scratch space back.
        descriptor = getattr(self, "_descriptor", None)
        if descriptor is not None and not getattr(self, "_finished", True):
            with contextlib.suppress(OSError):
                os.close(descriptor)


class SelectedRows(LazyRows):
    """Rows of `source` chosen per row (`source_row[i]` of `source`, or zeros where it is -1), read on demand:
    zero flow for the no-temporal control, forward flow only where a later frame exists."""

    def __init__(self, source: RowArray | None, source_row: np.ndarray, row_shape: tuple[int, ...], dtype=np.float32):
        super().__init__(len(source_row), row_shape, dtype)
        self._source = source
        self._source_row = np.asarray(source_row, dtype=np.int64)

    def _read_into(self, rows: np.ndarray, out: np.ndarray) -> None:
        out.fill(0)
        chosen = self._source_row[rows]
        have = np.flatnonzero(chosen >= 0)
        if len(have):
            out[have] = self._source[chosen[have]]


def zeros_like(rows: RowArray) -> np.ndarray | SelectedRows:
    """Zeros of `rows`' shape: a numpy array in memory, nothing stored for a disk-stored split."""
    if isinstance(rows, np.ndarray):
        return np.zeros_like(rows)
    return SelectedRows(None, np.full(len(rows), -1), tuple(rows.shape[1:]), rows.dtype)


def storage_directory(data: DataConfig) -> Path | None:
    """The scratch folder for data.storage "disk", None for "memory"."""
    if data.storage == "memory":
        return None
    return Path(os.path.expanduser(data.storage_dir))
