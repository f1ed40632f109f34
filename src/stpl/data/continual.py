"""A continual stream: one target video passing through several shifts in turn, the whole sequence repeated for
several rounds (as CoTTA's ten rounds of fog, night, rain and snow), for online adaptation that must neither forget
nor collapse.

The stream is built from the evaluation frames in order: block j (shift j) is the `frames` frames starting at
j * `frames` (wrapping round the frames), under corruption shifts[j]; round r repeats blocks 0..S-1 exactly, so the
first and the last round score the same frames under the same corruptions. Within a block each frame's earlier
frame is the one before it; a block's first frame (and a frame where the block wraps round to the first frames)
pairs with itself (zero flow), as a stream's first frame does:
at a shift the earlier frame of the stream looks different, and no frame outside the stream is read.
Stream position p (0-based) lies in round p // (S * frames), shift (p // frames) % S.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

Item = TypeVar("Item")


def continual_schedule(
    ordered: Sequence[Item], shifts: Sequence[str], frames: int, rounds: int
) -> tuple[list[tuple[Item, str]], list[tuple[int, int]]]:
    """(the distinct (frame, shift) entries, the stream's pairs as (current, earlier) indices into them, in order)."""
    if not ordered or not shifts or frames < 1 or rounds < 1:
        raise ValueError("a continual stream needs frames, at least one shift, frames >= 1 and rounds >= 1")
    entries: list[tuple[Item, str]] = []
    index: dict[tuple[int, int], int] = {}  # (position in `ordered`, shift number) -> entry

    def entry(position: int, shift: int) -> int:
        key = (position, shift)
        if key not in index:
            index[key] = len(entries)
            entries.append((ordered[position], shifts[shift]))
        return index[key]

    block: list[tuple[int, int]] = []
    for shift in range(len(shifts)):
        positions = [(shift * frames + offset) % len(ordered) for offset in range(frames)]
        for number, position in enumerate(positions):
            follows = number > 0 and positions[number - 1] == position - 1  # not where the block wraps round
            earlier = positions[number - 1] if follows else position
            block.append((entry(position, shift), entry(earlier, shift)))
    return entries, block * rounds


def stream_segment(position: int, shifts: int, frames: int) -> tuple[int, int]:
    """(round, shift number) of stream position `position`."""
    return position // (shifts * frames), (position // frames) % shifts
