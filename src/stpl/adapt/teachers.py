"""Teachers that produce pseudo-labels: a frozen copy, an exponential moving average, or the model itself."""

from __future__ import annotations

import copy

import torch
from torch import nn

from stpl.data.pairs import PairBatch
from stpl.models.segmenter import SegmenterOutput

TEACHERS = ("source", "ema", "current")


class Teacher:
    """`model` is what predicts pseudo-labels; `update(student)` follows the student (EMA only)."""

    def __init__(self, kind: str, student: nn.Module, ema_momentum: float = 0.99):
        if kind not in TEACHERS:
            raise ValueError(f"unknown teacher '{kind}' (known: {', '.join(TEACHERS)})")
        self.kind = kind
        self.ema_momentum = ema_momentum
        if kind == "current":
            self.model = student
        else:
            # A frozen copy of the starting point (after any normalisation re-estimation), always in eval mode.
            self.model = copy.deepcopy(student)
            self.model.eval()
            self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        if self.kind != "ema":
            return
        # In place, parameters and buffers alike, so BN statistics of an updating student are followed too.
        teacher_state = self.model.state_dict()
        for name, value in student.state_dict().items():
            target = teacher_state[name]
            if target.dtype.is_floating_point:
                target.mul_(self.ema_momentum).add_(value.detach(), alpha=1.0 - self.ema_momentum)
            else:
                target.copy_(value)

    @torch.no_grad()
    def predict(self, batch: PairBatch) -> SegmenterOutput:
        """The teacher's prediction in eval mode (dropout off, stored BN statistics); module modes restored."""
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        output = self.model(batch.current, batch.previous, batch.flow)
        for module, training in modes:
            module.training = training
        return output
