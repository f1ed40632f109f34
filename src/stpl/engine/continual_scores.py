"""Scores of a continual stream (data/continual.py) per round and per shift, beside the stream's overall score.

One confusion matrix per (round, shift) segment; a segment's mIoU is over its own frames (classes absent there
and never predicted do not count, as for any split). The summary: mIoU[round][shift], the mean over shifts of
each round, the mean over rounds of each shift, and the first and last rounds side by side (their difference is
what the stream's length did to the model: forgetting or drift if negative).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from stpl.data.continual import stream_segment
from stpl.engine.evaluate import ConfusionMatrix, scores


class ContinualScores:
    def __init__(self, num_classes: int, shifts: Sequence[str], frames: int, rounds: int):
        self.shifts, self.frames, self.rounds = list(shifts), frames, rounds
        self.confusions = [[ConfusionMatrix(num_classes) for _ in shifts] for _ in range(rounds)]
        self.counts = [[0 for _ in shifts] for _ in range(rounds)]

    def update(self, position: int, prediction: Tensor, label: Tensor) -> None:
        round_number, shift = stream_segment(position, len(self.shifts), self.frames)
        self.confusions[round_number][shift].update(prediction, label)
        self.counts[round_number][shift] += 1

    def summary(self, class_names: Sequence[str], reported: Sequence[str] | None) -> dict[str, Any]:
        def miou(confusion: ConfusionMatrix, count: int) -> float:
            return scores(confusion, class_names, reported, count)["mIoU"]

        table = [
            [miou(confusion, count) for confusion, count in zip(row, counts, strict=True)]
            for row, counts in zip(self.confusions, self.counts, strict=True)
        ]
        round_means = [sum(row) / len(row) for row in table]
        shift_means = [sum(row[s] for row in table) / len(table) for s in range(len(self.shifts))]
        return {
            "shifts": self.shifts, "frames_per_shift": self.frames, "rounds": self.rounds,
            "mIoU": table, "round_mean": round_means, "shift_mean": dict(zip(self.shifts, shift_means, strict=True)),
            "first_round": round_means[0], "last_round": round_means[-1],
            "last_minus_first": round_means[-1] - round_means[0],
        }  # fmt: skip
