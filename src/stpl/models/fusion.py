"""Spatio-temporal fusion blocks S(f_t, f~): combine current features with the warped earlier frame's features.

All four take f_t and f~ of shape [B,C,H,W]. `concat` returns 2C channels, the others C. Where an operation has
parameters it starts as (or close to) the identity on f_t, so adaptation begins from the source model's features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConcatFusion(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.out_channels = 2 * channels

    def forward(self, current: Tensor, warped: Tensor) -> Tensor:
        return torch.cat((current, warped), dim=1)


class AddFusion(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.out_channels = channels

    def forward(self, current: Tensor, warped: Tensor) -> Tensor:
        return current + warped


class ConvFusion(nn.Module):
    """1x1 convolution over [f_t ; f~] back to C channels, weights initialised to [I, 0] so that z = f_t."""

    def __init__(self, channels: int):
        super().__init__()
        self.out_channels = channels
        self.conv = nn.Conv2d(2 * channels, channels, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, :channels, 0, 0] = torch.eye(channels)
            self.conv.bias.zero_()

    def forward(self, current: Tensor, warped: Tensor) -> Tensor:
        return self.conv(torch.cat((current, warped), dim=1))


class AttentionFusion(nn.Module):
    """Per-pixel softmax over the two sources: w = softmax(conv([f_t ; f~]) + b), z = w_0 f_t + w_1 f~.

    The score convolution starts at zero and the bias at (+b0, -b0), so initially w_0 = sigmoid(2 b0) ≈ 0.98
    everywhere: z starts close to f_t and learns where the earlier frame helps (e.g. where the flow is reliable).
    """

    def __init__(self, channels: int, initial_current_weight: float = 0.98):
        super().__init__()
        self.out_channels = channels
        self.score = nn.Conv2d(2 * channels, 2, kernel_size=1)
        half_logit = 0.5 * torch.logit(torch.tensor(initial_current_weight)).item()
        with torch.no_grad():
            self.score.weight.zero_()
            self.score.bias.copy_(torch.tensor([half_logit, -half_logit]))

    def weights(self, current: Tensor, warped: Tensor) -> Tensor:
        """[B,2,H,W] per-pixel weights of (current, warped), summing to one."""
        return torch.softmax(self.score(torch.cat((current, warped), dim=1)), dim=1)

    def forward(self, current: Tensor, warped: Tensor) -> Tensor:
        weights = self.weights(current, warped)
        return weights[:, :1] * current + weights[:, 1:] * warped


FUSIONS: dict[str, type[nn.Module]] = {
    "concat": ConcatFusion,
    "add": AddFusion,
    "conv": ConvFusion,
    "attention": AttentionFusion,
}


def build_fusion(name: str, channels: int) -> nn.Module:
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion '{name}' (known: {', '.join(FUSIONS)})")
    return FUSIONS[name](channels)
