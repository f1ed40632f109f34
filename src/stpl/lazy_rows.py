"""Arrays of fixed-shape rows read on demand: what a split's frames, labels and flow need to offer when they are
not held in memory (`shape`, `dtype`, `len`, iteration, reads by an integer, a slice or an index array, each
returning a numpy array as numpy indexing would). Subclasses say how to read a set of rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class LazyRows:
    def __init__(self, count: int, row_shape: tuple[int, ...], dtype: np.dtype | type):
        self.shape = (count, *row_shape)
        self.dtype = np.dtype(dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __iter__(self) -> Iterator[np.ndarray]:
        for row in range(len(self)):
            yield self[row]

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> np.ndarray:
        rows, scalar = row_numbers(index, len(self))
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        self._read_into(rows, out)
        return out[0] if scalar else out

    def _read_into(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Fill out[i] with row rows[i]."""
        raise NotImplementedError


def row_numbers(index: int | slice | Sequence[int] | np.ndarray, count: int) -> tuple[np.ndarray, bool]:
    """Index -> (non-negative row numbers, whether one row was asked for as a scalar)."""
    if isinstance(index, (int, np.integer)):
        row = int(index) + (count if index < 0 else 0)
        if not 0 <= row < count:
            raise IndexError(f"row {index} out of range for {count} rows")
        return np.asarray([row]), True
    if isinstance(index, slice):
        return np.arange(count)[index], False
    rows = np.asarray(index, dtype=np.int64).reshape(-1)
    if len(rows) and (rows.min() < -count or rows.max() >= count):
        raise IndexError(f"rows out of range for {count} rows")
    return np.where(rows < 0, rows + count, rows), False
