"""Batch normalisation over the global batch when several processes train (`sync_norm: true`).

Each process sees its share of every batch; plain BatchNorm would normalise by that share's statistics, so N
processes would not train like one. `SyncedBatchNorm` all-reduces the per-channel sums (autograd-aware, so the
gradient flows through the global statistics as it would in one process) and normalises with the global mean and
variance. Unlike `torch.nn.SyncBatchNorm`, which wants a GPU, it runs on CPU with gloo too. With one process, or in
eval mode, it is plain BatchNorm2d (same parameters and buffers: checkpoints do not change).
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
        use_batch_statistics = self.training or not self.track_running_stats
        if not use_batch_statistics or _world_size() == 1:
            return super().forward(input)
        channels = input.shape[1]
        count = input.new_tensor([input.numel() / channels])
        sums = torch.cat((input.sum(dim=(0, 2, 3)), (input * input).sum(dim=(0, 2, 3)), count))
        sums = distributed_functional.all_reduce(sums)  # summed over processes, gradient included
        total = sums[-1]
        mean = sums[:channels] / total
        variance = (sums[channels : 2 * channels] / total - mean * mean).clamp_min(0.0)
        if self.training and self.track_running_stats:
            self._update_running_statistics(mean.detach(), variance.detach(), total.detach())
        shape = (1, channels, 1, 1)
        output = (input - mean.view(shape)) * torch.rsqrt(variance.view(shape) + self.eps)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output

    @torch.no_grad()
    def _update_running_statistics(self, mean: Tensor, variance: Tensor, total: Tensor) -> None:
        """As BatchNorm2d does: momentum None is the cumulative average; the stored variance is unbiased."""
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = variance * total / (total - 1).clamp_min(1.0)
        self.running_mean.mul_(1.0 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1.0 - factor).add_(unbiased, alpha=factor)


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
