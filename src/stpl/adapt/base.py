"""The adaptation methods' common base: the adapt learning rates, normalisation modes and the L2-SP anchor."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from stpl.adapt.norm import set_norm_mode, train_only_norm_affine
from stpl.config import AdaptConfig
from stpl.engine.method import Method, parameter_groups


class AdaptationMethod(Method):
    """A target-adaptation method: all parameters at the adapt learning rates, normalisation as `adapt.norm` says.

    With adapt.lambda_anchor > 0, `anchor_loss` pulls the weights towards the starting model's (L2-SP, Li et al.
    2018). Built before any step, so the anchor is the source model's weights, on resume too (re-estimated
    normalisation statistics are buffers, not weights). With adapt.trainable "norm" only the batch-norm affine
    parameters train, without weight decay (as TENT's; decay would pull the scales towards 0).
    """

    def __init__(self, model: nn.Module, config: AdaptConfig):
        super().__init__(model)
        self.config = config
        if config.trainable == "norm":
            train_only_norm_affine(model, "adapt.trainable=norm")
        self.anchor: dict[str, Tensor] = {}
        if config.lambda_anchor > 0:
            self.anchor = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def anchor_loss(self) -> dict[str, Tensor]:
        """{"loss_anchor": λ/2 · Σ ||θ - θ_0||²} over the trainable parameters; {} when off."""
        if not self.anchor:
            return {}
        parameters = dict(self.model.named_parameters())
        total = sum((parameters[name] - start).pow(2).sum() for name, start in self.anchor.items())
        return {"loss_anchor": 0.5 * self.config.lambda_anchor * total}

    def param_groups(self) -> list[dict[str, Any]]:
        groups = parameter_groups(self.model, self.config.lr, self.config.backbone_lr_scale)
        if self.config.trainable == "norm":
            return [{**group, "weight_decay": 0.0} for group in groups]
        return groups

    def train_mode(self) -> None:
        self.model.train()
        set_norm_mode(self.model, self.config.norm)
