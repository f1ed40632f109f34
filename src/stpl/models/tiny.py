"""A few-thousand-parameter backbone for tests and toy runs: four strided conv-BN-ReLU stages."""

from __future__ import annotations

from torch import Tensor, nn


class TinyBackbone(nn.Module):
    """x [B,3,H,W] -> features [B,32,H/os,W/os], or (stride-8 features, features) with `return_low_level`."""

    def __init__(self, output_stride: int = 8, width: int = 16, return_low_level: bool = False):
        super().__init__()
        self.return_low_level = return_low_level
        layers: list[nn.Module] = []
        cin, stride = 3, 1
        self.low_level_index, self.low_channels = 0, 0
        for cout in (width, width, 2 * width, 2 * width):
            step = 2 if stride < output_stride else 1
            stride *= step
            layers += [nn.Conv2d(cin, cout, 3, step, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
            if stride <= 8:
                self.low_level_index, self.low_channels = len(layers) - 1, cout
        self.features = nn.Sequential(*layers)
        self.out_channels = cin
        self.output_stride = stride

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if not self.return_low_level:
            return self.features(x)
        low = self.features[: self.low_level_index + 1](x)
        return low, self.features[self.low_level_index + 1 :](low)
