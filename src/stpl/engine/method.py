"""What the training loop expects of a method: named losses from `step`, and a few small hooks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

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
    """A method owns its model and returns a dict of named values per step; keys starting "loss_" are summed.

    Source data: a method whose class sets `uses_source = True` (domain adaptation *with* source data, the UDA
    baselines) is given, in every step's batch, that step's labelled source pairs as `batch.source`; the adaptation
    workflow opens the labelled source split for it and records `uses_source` in the run. For every other method
    `batch.source` is None and the source split is never opened (the source-free guarantee).
    """

    name = "method"
    uses_source = False

    def __init__(self, model: nn.Module):
        self.model = model

    @classmethod
    def looks_ahead(cls, config: Any) -> bool:
        """Whether this method, under these (adapt) settings, reads the pairs that follow each batch's pairs
        (PairBatch.later): the data are only prepared for the methods that do."""
        return False

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

    def set_source_class_weights(self, weights: Tensor) -> None:
        """For a method with `uses_source`: the class weights of the labelled source split's cross-entropy (the
        source model's, from its training recipe), given once before the first step. Others never get it."""
