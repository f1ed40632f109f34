"""Batch normalisation over the global batch when several processes train (`sync_norm: true`).

Each process sees its share of every batch; plain BatchNorm would normalise by that share's statistics, so N
processes would not train like one. `SyncedBatchNorm` combines the per-channel statistics of all processes
(autograd-aware, so the gradient flows through the global statistics as it would in one process) and normalises
with the global mean and variance, in float32 under autocast. Unlike `torch.nn.SyncBatchNorm`, which wants a GPU,
it runs on CPU with gloo too. With one process, or in eval mode, it is plain BatchNorm2d (same parameters and
buffers: checkpoints do not change).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as distributed_functional
from torch import Tensor, nn


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class SyncedBatchNorm(nn.BatchNorm2d):
    def forward(self, input: Tensor) -> Tensor:
        if not self.training or _world_size() == 1:
            return super().forward(input)
        mean, variance, total = _global_statistics(input)
        if self.track_running_stats:
            self._update_running_statistics(mean.detach(), variance.detach(), total)
        shape = (1, input.shape[1], 1, 1)
        output = (input.float() - mean.view(shape)) * torch.rsqrt(variance.view(shape) + self.eps)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output.to(input.dtype)

    @torch.no_grad()
    def _update_running_statistics(self, mean: Tensor, variance: Tensor, total: float) -> None:
        """As BatchNorm2d does: momentum None is the cumulative average; the stored variance is unbiased."""
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = variance * total / max(total - 1.0, 1.0)
        self.running_mean.mul_(1.0 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1.0 - factor).add_(unbiased, alpha=factor)


def _global_statistics(input: Tensor) -> tuple[Tensor, Tensor, float]:
    """Per-channel mean and (biased) variance of the global batch, float32 whatever autocast does, and its pixel
    count. Each process's mean and sum of squared deviations are combined exactly (Chan et al.'s parallel
    formula), which neither overflows a half-precision count nor cancels like E[x²] - E[x]²."""
    values = input.float().transpose(0, 1).reshape(input.shape[1], -1)  # [C, pixels of this process]
    count = values.shape[1]
    local_mean = values.mean(dim=1)
    local_squares = ((values - local_mean[:, None]) ** 2).sum(dim=1)
    counts = [torch.zeros(1, dtype=torch.float64, device=input.device) for _ in range(_world_size())]
    dist.all_gather(counts, torch.tensor([count], dtype=torch.float64, device=input.device))
    means = distributed_functional.all_gather(local_mean)  # with gradient, like the normalisation itself
    squares = distributed_functional.all_gather(local_squares)
    weights = [float(c.item()) for c in counts]
    total = sum(weights)
    mean = sum(w * m for w, m in zip(weights, means, strict=True)) / total
    squared = sum(s + w * (m - mean) ** 2 for w, m, s in zip(weights, means, squares, strict=True))
    return mean, squared / total, total


def synced_norms(model: nn.Module) -> nn.Module:
    """`model` with every BatchNorm2d replaced, in place, by a `SyncedBatchNorm` holding the same state."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                synced = SyncedBatchNorm(
                    child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
                )
                synced = synced.to(next(iter([*child.parameters(), *child.buffers()])).device)
                synced.load_state_dict(child.state_dict())
                synced.train(child.training)
                setattr(parent, name, synced)
    return model
