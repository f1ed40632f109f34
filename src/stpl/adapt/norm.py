"""How normalisation statistics are treated while adapting: frozen (source), re-estimated on target, or updated."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from stpl.data.pairs import PairBatch

NORM_MODES = ("frozen", "reestimate", "update")


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_norm_mode(model: nn.Module, mode: str) -> None:
    """Put BN layers in eval (use stored statistics) or train (batch statistics, update running ones) mode.

    Call after model.train()/eval(): "frozen" and "reestimate" keep stored statistics while the rest trains.
    """
    if mode not in NORM_MODES:
        raise ValueError(f"unknown norm mode '{mode}' (known: {', '.join(NORM_MODES)})")
    for norm in batch_norms(model):
        norm.train(mode == "update")


@torch.no_grad()
def reestimate_norm_statistics(model: nn.Module, batches: Iterable[PairBatch]) -> int:
    """AdaBN: replace every BN layer's running statistics by their average over the given target batches.

    Both frames of each pair pass through the encoder, as they do when adapting. Returns the number of batches.
    """
    norms = batch_norms(model)
    saved_momenta = [norm.momentum for norm in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average = the plain mean over batches
    model.train()
    count = 0
    for batch in batches:
        model(batch.current, batch.previous, batch.flow)
        count += 1
    for norm, momentum in zip(norms, saved_momenta, strict=True):
        norm.momentum = momentum
    model.train(was_training)
    return count
