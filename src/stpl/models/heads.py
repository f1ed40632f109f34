"""Segmentation necks (ASPP, LR-ASPP) and classifier, score fusion, and the contrastive projection head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (1x1, dilated 3x3 branches, image pooling) -> C channels."""

    def __init__(self, cin: int, channels: int, rates: tuple[int, ...]):
        super().__init__()

        def conv_bn_relu(kernel: int, dilation: int) -> nn.Sequential:
            padding = (kernel - 1) // 2 * dilation
            return nn.Sequential(
                nn.Conv2d(cin, channels, kernel, padding=padding, dilation=dilation, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )

        self.branches = nn.ModuleList([conv_bn_relu(1, 1)] + [conv_bn_relu(3, rate) for rate in rates])
        # No norm on the pooled branch: a 1x1 map per image has no spatial statistics (and batch size 1 breaks BN).
        self.pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, channels, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(
            nn.Conv2d(channels * (len(rates) + 2), channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        outputs = [branch(x) for branch in self.branches]
        outputs.append(self.pooling(x).expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(outputs, dim=1))


class LRASPP(nn.Module):
    """LR-ASPP-style neck (Searching for MobileNetV3, 2019): a 1x1 branch on the deep features, gated per channel by
    their global average, upsampled to the stride-8 features and concatenated with them -> C + C_low channels.

    A 1x1 classifier on the concatenation equals the paper's sum of a classifier on each part, and gives the
    fusion block and projection head one stride-8 feature map.
    """

    def __init__(self, low_channels: int, cin: int, channels: int):
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(cin, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True))
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, channels, 1), nn.Sigmoid())
        self.out_channels = channels + low_channels

    def forward(self, levels: tuple[Tensor, Tensor]) -> Tensor:
        low, deep = levels
        gated = self.branch(deep) * self.gate(deep)
        gated = F.interpolate(gated, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat((gated, low), dim=1)


class ScoreFusion(nn.Module):
    """ACCEL's fusion of logits: 1x1 conv over [current ; warped earlier], initialised so output = current."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(2 * num_classes, num_classes, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, :num_classes, 0, 0] = torch.eye(num_classes)
            self.conv.bias.zero_()

    def forward(self, current: Tensor, warped: Tensor) -> Tensor:
        return self.conv(torch.cat((current, warped), dim=1))


class ProjectionHead(nn.Module):
    """1x1-conv MLP (Cin -> C -> D) with per-pixel L2 normalisation: the embeddings of the contrastive loss."""

    def __init__(self, cin: int, hidden: int, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(cin, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, dim, 1))

    def forward(self, z: Tensor) -> Tensor:
        return F.normalize(self.mlp(z), dim=1)
