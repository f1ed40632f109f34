"""What the training loop expects of a method: named losses from `step`, and a few small hooks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from stpl.adapt.norm import set_norm_mode
from stpl.config import AdaptConfig
from stpl.data.pairs import PairBatch


def parameter_groups(model: nn.Module, lr: float, backbone_lr_scale: float) -> list[dict[str, Any]]:
    """Pretrained backbone parameters at lr * scale, everything else at lr (only those requiring gradients)."""
    backbone, rest = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (backbone if name.startswith("backbone.") else rest).append(parameter)
    groups = [{"params": rest, "lr": lr, "initial_lr": lr}]
    if backbone:
        groups.append({"params": backbone, "lr": lr * backbone_lr_scale, "initial_lr": lr * backbone_lr_scale})
    return groups


class Method:
    """A method owns its model and returns a dict of named values per step; keys starting "loss_" are summed."""

    name = "method"

    def __init__(self, model: nn.Module):
        self.model = model

    def param_groups(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def train_mode(self) -> None:
        """Set module modes for a training step (called before every step)."""
        self.model.train()

    def prepare(self, batches: Iterable[PairBatch]) -> None:
        """Runs once before the first step of a new run (not on resume), with one pass over the training data
        (e.g. to fix pseudo-label thresholds); whatever it sets that later steps need belongs in `extra_state`."""

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        raise NotImplementedError

    def after_step(self) -> None:
        """Runs after the optimiser step (e.g. an EMA teacher update)."""

    def extra_state(self) -> dict[str, Tensor]:
        """Tensors beyond the model and optimiser that a resumed run needs."""
        return {}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        """Inverse of `extra_state`."""


class AdaptationMethod(Method):
    """A target-adaptation method: all parameters at the adapt learning rates, normalisation as `adapt.norm` says.

    With adapt.lambda_anchor > 0, `anchor_loss` pulls the weights towards the starting model's (L2-SP, Li et al.
    2018). Built before any step, so the anchor is the source model's weights, on resume too (re-estimated
    normalisation statistics are buffers, not weights).
    """

    def __init__(self, model: nn.Module, config: AdaptConfig):
        super().__init__(model)
        self.config = config
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
        return parameter_groups(self.model, self.config.lr, self.config.backbone_lr_scale)

    def train_mode(self) -> None:
        self.model.train()
        set_norm_mode(self.model, self.config.norm)
