"""Frame statistics: batch-norm layers that, when they predict (eval mode), normalise each frame by a mix of its own
statistics and the stored ones, so that a change of conditions is met at the frame where it happens.

Statistics that follow a stream (an exponential moving average over update windows) lag: after a change they are
the previous conditions' for as many frames as the average remembers. Each frame's own per-channel mean and
variance over its pixels carry no lag. With share s a layer normalises frame n by

    mean_n = (1 - s) * stored_mean + s * frame_mean_n,   var_n = (1 - s) * stored_var + s * frame_var_n

(s = 0: the stored statistics; s = 1: the frame's own, as TENT and test-time BN normalise a test batch), the
weighted prior of Schneider et al. (NeurIPS 2020) with the stored statistics as the prior and one frame as the batch.

Each `nn.BatchNorm2d` of the model becomes a `FrameStatisticsBatchNorm2d` in place (same parameters, buffers and
state-dict names), which does this in one batch-norm pass over the frames laid side by side as channels. Copies
made with `copy.deepcopy` keep the class and the share, so teachers copied from the model normalise the same way;
training-mode forward passes are those of `nn.BatchNorm2d`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Frames whose feature maps at a layer have fewer pixels than this keep the stored statistics there: a variance
# over a handful of positions (or one, after global pooling) says nothing about the conditions.
MIN_PIXELS = 16


class FrameStatisticsBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` that in eval mode normalises each frame by `frame_share` of its own statistics and the
    rest of the stored ones (set by `use_frame_statistics`)."""

    frame_share: float = 0.0

    def forward(self, x: Tensor) -> Tensor:
        pixels = x.shape[2] * x.shape[3] if x.dim() == 4 else 0
        if self.training or self.running_mean is None or self.frame_share == 0.0 or pixels < MIN_PIXELS:
            return super().forward(x)
        values = x.float()
        frame_mean = values.mean(dim=(2, 3))  # [N, C]
        # E[x^2] - E[x]^2: two cheap reductions (torch.var_mean is ~10x slower on CPU); float32 suffices here
        frame_var = (values.square().mean(dim=(2, 3)) - frame_mean.square()).clamp_(min=0.0)
        mean = torch.lerp(self.running_mean.expand_as(frame_mean), frame_mean, self.frame_share)
        var = torch.lerp(self.running_var.expand_as(frame_var), frame_var, self.frame_share)
        if torch.is_grad_enabled() and values.requires_grad:  # batch_norm takes no gradient through statistics
            scale = torch.rsqrt(var + self.eps)
            shift = -mean * scale
            if self.weight is not None:
                scale, shift = scale * self.weight, shift * self.weight + self.bias
            out = torch.addcmul(shift[:, :, None, None], values, scale[:, :, None, None])
        else:  # one pass: the frames side by side as channels, each with its own statistics
            n, c = frame_mean.shape
            weight = self.weight.repeat(n) if self.weight is not None else None
            bias = self.bias.repeat(n) if self.bias is not None else None
            out = F.batch_norm(values.reshape(1, n * c, *x.shape[2:]), mean.reshape(-1), var.reshape(-1), weight,
                               bias, False, 0.0, self.eps)  # fmt: skip
        return out.view_as(x).to(x.dtype)


def use_frame_statistics(model: nn.Module, share: float) -> int:
    """Make every `nn.BatchNorm2d` of `model` mix `share` (in [0, 1]) of each frame's own statistics in when it
    predicts; 0 goes back to the stored statistics alone. Returns how many layers mix the frame's in."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the frame statistics' share must lie in [0, 1], got {share}")
    if share == 0.0:  # layers made earlier keep their class (copies and state dicts stay alike) and stop mixing
        for norm in model.modules():
            if isinstance(norm, FrameStatisticsBatchNorm2d):
                norm.frame_share = 0.0
        return 0
    norms = [m for m in model.modules() if type(m) in (nn.BatchNorm2d, FrameStatisticsBatchNorm2d)]
    for norm in norms:
        norm.__class__ = FrameStatisticsBatchNorm2d  # same state; only the eval-mode forward differs
        norm.frame_share = share
    return len(norms)


def frame_share(model: nn.Module) -> float:
    """The share of each frame's own statistics `model`'s batch-norm layers mix in (0 when none does)."""
    return max((m.frame_share for m in model.modules() if isinstance(m, FrameStatisticsBatchNorm2d)), default=0.0)


def has_batch_norm(model: nn.Module) -> bool:
    """Whether `model` has a layer that frame statistics act on (frozen batch norm does not count)."""
    return any(type(m) in (nn.BatchNorm2d, FrameStatisticsBatchNorm2d) for m in model.modules())
