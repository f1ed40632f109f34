"""Supervised training on labelled pairs: the source model, and the oracle trained on target labels."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from stpl.constants import IGNORE_INDEX
from stpl.data.pairs import PairBatch
from stpl.engine.method import Method, parameter_groups
from stpl.models.segmenter import upsample


class Supervised(Method):
    name = "supervised"

    def __init__(self, model: nn.Module, lr: float, backbone_lr_scale: float, class_weights: Tensor | None = None):
        super().__init__(model)
        self.lr = lr
        self.backbone_lr_scale = backbone_lr_scale
        self.class_weights = class_weights  # [K] cross-entropy weights, None = unweighted

    def param_groups(self) -> list[dict[str, Any]]:
        return parameter_groups(self.model, self.lr, self.backbone_lr_scale)

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        if batch.label is None:
            raise ValueError("supervised training needs labels")
        output = self.model(batch.current, batch.previous, batch.flow)
        logits = upsample(output.logits, batch.label.shape[-2:])
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        return {"loss_seg": F.cross_entropy(logits.float(), batch.label, weight=weight, ignore_index=IGNORE_INDEX)}
