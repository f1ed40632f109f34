"""Normalisation statistics that follow the stream (`norm-online`): the simplest stream baseline.

No weight changes: each update is a forward pass of the window in which every batch-norm layer normalises by the
batch's statistics and moves its stored ones towards them by adapt.norm_ema.momentum (an exponential moving average
over the stream, starting from the source statistics, which act as its prior); predictions use the stored ones.
As TTA toolkits' "BN adapt" on a stream, and AdaBN made causal. Offline (`stpl adapt --method norm-ema`), the same
moving average over random batches of the adaptation frames.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from stpl.adapt.norm import batch_norms
from stpl.config import AdaptConfig
from stpl.data.pairs import PairBatch
from stpl.engine.method import Method


class NormEMA(Method):
    name = "norm-ema"

    def __init__(self, model: nn.Module, config: AdaptConfig, seed: int = 0):
        super().__init__(model)
        self.momentum = config.norm_ema_momentum
        self.norms = batch_norms(model)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [], "lr": 0.0, "initial_lr": 0.0}]  # nothing is trained

    def train_mode(self) -> None:
        self.model.eval()
        for norm in self.norms:
            norm.train(True)
            norm.momentum = self.momentum

    @torch.no_grad()
    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        self.model(batch.current, batch.previous, batch.flow)  # the forward pass moves the statistics
        return {}
