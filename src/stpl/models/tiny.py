"""A few-thousand-parameter backbone for tests and toy runs: four strided conv-BN-ReLU stages."""

from __future__ import annotations

from torch import Tensor, nn


class TinyBackbone(nn.Module):
    """x [B,3,H,W] -> features [B,32,H/os,W/os]."""

    def __init__(self, output_stride: int = 8, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        cin, stride = 3, 1
        for cout in (width, width, 2 * width, 2 * width):
            step = 2 if stride < output_stride else 1
            stride *= step
            layers += [nn.Conv2d(cin, cout, 3, step, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.out_channels = cin
        self.output_stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
