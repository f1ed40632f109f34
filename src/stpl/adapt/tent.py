"""TENT: test entropy minimisation (Wang et al., ICLR 2021), as a source-free adaptation baseline.

Original: minimise the Shannon entropy H(p) = -Σ_k p_k log p_k of the model's predictions on target batches,
updating only the affine parameters (γ, β) of the normalisation layers; batch normalisation uses the statistics of
the current target batch instead of the stored source ones. Everything else stays as trained on the source.

Here: the entropy of the fused video prediction, upsampled to the image and averaged over pixels (no normalisation
by log K, as in the paper). Only batch-norm γ and β train, without weight decay (TENT optimises them with plain
SGD/Adam; decay would pull γ towards 0). Every forward pass normalises with batch statistics. What the *stored*
statistics are, which evaluation uses, follows `adapt.norm`: "reestimate" (default: AdaBN statistics of the target,
estimated before adapting and then left alone), "frozen" (the source's, left alone) or "update" (they follow the
target batches with BN's momentum). Dropout stays active, as TENT runs the model in train mode.
Hyper-parameters: the shared schedule (adapt.lr, poly decay, momentum); TENT has no options of its own.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from stpl.adapt.norm import batch_norms, batch_statistics, train_only_norm_affine
from stpl.config import AdaptConfig
from stpl.data.pairs import PairBatch
from stpl.engine.method import Method, parameter_groups
from stpl.losses.entropy import entropy_map
from stpl.models.segmenter import upsample


class Tent(Method):
    name = "tent"

    def __init__(self, model: nn.Module, config: AdaptConfig, seed: int = 0):
        super().__init__(model)
        self.config = config
        self.norms = batch_norms(model)
        train_only_norm_affine(model, "tent")

    def param_groups(self) -> list[dict[str, Any]]:
        groups = parameter_groups(self.model, self.config.lr, self.config.backbone_lr_scale)
        return [{**group, "weight_decay": 0.0} for group in groups]

    def train_mode(self) -> None:
        self.model.train()

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        with batch_statistics(self.norms, update_running=self.config.norm == "update"):
            output = self.model(batch.current, batch.previous, batch.flow)
        logits = upsample(output.logits, batch.current.shape[-2:])
        return {"loss_entropy": entropy_map(logits).mean()}
