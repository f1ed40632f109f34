"""How normalisation statistics are treated while adapting: frozen (source), re-estimated on target, or updated."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from stpl.data.pairs import PairBatch
from stpl.errors import StplError

NORM_MODES = ("frozen", "reestimate", "update")


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def train_only_norm_affine(model: nn.Module, who: str) -> None:
    """Freeze every parameter but the batch-norm scales and shifts (TENT's trainable set); `who` names what asked,
    for the error when the model has none."""
    affine = [norm for norm in batch_norms(model) if norm.affine]
    if not affine:
        raise StplError(f"{who} trains batch-norm affine parameters, and this model has none (frozen BN?)")
    model.requires_grad_(False)
    for norm in affine:
        norm.weight.requires_grad_(True)
        norm.bias.requires_grad_(True)


def set_norm_mode(model: nn.Module, mode: str) -> None:
    """Put BN layers in eval (use stored statistics) or train (batch statistics, update running ones) mode.

    Call after model.train()/eval(): "frozen" and "reestimate" keep stored statistics while the rest trains.
    """
    if mode not in NORM_MODES:
        raise ValueError(f"unknown norm mode '{mode}' (known: {', '.join(NORM_MODES)})")
    for norm in batch_norms(model):
        norm.train(mode == "update")


@torch.no_grad()
def reestimate_norm_statistics(model: nn.Module, batches: Iterable[PairBatch], source_weight: float = 0.0) -> int:
    """AdaBN: replace every BN layer's running statistics by their average over the given target batches.

    source_weight w keeps a share of the source statistics: stat = w * source + (1 - w) * target (the source
    statistics as a prior, as in Schneider et al., NeurIPS 2020); 0 is plain AdaBN.
    Both frames of each pair pass through the encoder, as they do when adapting. Returns the number of batches.
    """
    if not 0.0 <= source_weight <= 1.0:
        raise ValueError(f"source_weight must lie in [0, 1], got {source_weight}")
    norms = batch_norms(model)
    source_stats = [(norm.running_mean.clone(), norm.running_var.clone()) for norm in norms]
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
    for norm, momentum, (mean, var) in zip(norms, saved_momenta, source_stats, strict=True):
        norm.momentum = momentum
        norm.running_mean.mul_(1.0 - source_weight).add_(mean, alpha=source_weight)
        norm.running_var.mul_(1.0 - source_weight).add_(var, alpha=source_weight)
    model.train(was_training)
    return count


@contextmanager
def batch_statistics(norms: list[nn.modules.batchnorm._BatchNorm], update_running: bool) -> Iterator[None]:
    """Normalise with batch statistics; the stored running statistics change only if `update_running`."""
    saved = [(norm.training, norm.track_running_stats) for norm in norms]
    for norm in norms:
        norm.train(True)
        # BN in train mode without tracking passes no running buffers to F.batch_norm: nothing is written.
        norm.track_running_stats = update_running
    try:
        yield
    finally:
        for norm, (training, tracking) in zip(norms, saved, strict=True):
            norm.train(training)
            norm.track_running_stats = tracking
