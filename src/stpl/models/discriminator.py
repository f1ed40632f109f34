"""The fully-convolutional domain discriminator of output-space adversarial adaptation (AdaptSegNet, AdvEnt and the
video methods after them: DA-VSN, VAT-VST).

Input: a map of per-pixel class probabilities [B,C,h,w] (C = K classes, or 2K for a spatio-temporal discriminator
that sees two frames' predictions together). Four 4x4 convolutions of stride 2 with `width`, 2x, 4x, 8x channels,
each followed by LeakyReLU(0.2), then a 4x4 convolution of stride 2 to one channel: a map of logits, one per patch,
of "this came from the target domain". Maps smaller than `min_size` on a side are first enlarged (bilinear), so
that five stride-2 layers always leave at least one patch.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Discriminator(nn.Module):
    def __init__(self, in_channels: int, width: int = 64, min_size: int = 32):
        super().__init__()
        self.min_size = min_size
        layers: list[nn.Module] = []
        channels = in_channels
        for multiple in (1, 2, 4, 8):
            layers += [nn.Conv2d(channels, width * multiple, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = width * multiple
        layers.append(nn.Conv2d(channels, 1, 4, stride=2, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, probabilities: Tensor) -> Tensor:
        height, width = probabilities.shape[-2:]
        if min(height, width) < self.min_size:
            scale = self.min_size / min(height, width)
            size = (max(self.min_size, round(height * scale)), max(self.min_size, round(width * scale)))
            probabilities = F.interpolate(probabilities, size=size, mode="bilinear", align_corners=False)
        return self.layers(probabilities)
