"""MobileNetV2 with parameter names identical to torchvision's, so its ImageNet file loads as is.

Only the feature extractor up to the 320-channel block is built (the 1280-channel 1x1 layer and the classifier
are ImageNet-specific). Strides past the requested output stride become dilations, as in DeepLab. With
`return_low_level` the forward also returns the last stride-8 features (32 channels), for decoders that use them.
"""

from __future__ import annotations

from torch import Tensor, nn

# (expansion t, output channels c, repeats n, first stride s) -- the paper's Table 2
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class ConvBNReLU6(nn.Sequential):
    """Indexed children 0 (conv) and 1 (norm), matching torchvision's Conv2dNormActivation."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1):
        padding = (kernel - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int, dilation: int):
        super().__init__()
        hidden = cin * expansion
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden, dilation=dilation),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Features(nn.Module):
    """x [B,3,H,W] -> features [B,320,H/os,W/os], or (low [B,32,H/8,W/8], features) with `return_low_level`."""

    def __init__(self, output_stride: int = 8, return_low_level: bool = False):
        super().__init__()
        self.return_low_level = return_low_level
        self.low_level_index = 0  # last layer whose output is at stride <= 8
        self.low_channels = 0
        layers: list[nn.Module] = [ConvBNReLU6(3, 32, stride=2)]
        stride, dilation, cin = 2, 1, 32
        for expansion, cout, repeats, first_stride in _SETTINGS:
            for i in range(repeats):
                block_stride = first_stride if i == 0 else 1
                block_dilation = dilation
                if block_stride > 1 and stride >= output_stride:
                    # Past the output stride: keep the resolution and widen the receptive field instead.
                    dilation *= block_stride
                    block_stride = 1
                elif block_stride > 1:
                    stride *= block_stride
                layers.append(InvertedResidual(cin, cout, block_stride, expansion, block_dilation))
                cin = cout
                if stride <= 8:
                    self.low_level_index, self.low_channels = len(layers) - 1, cout
        self.features = nn.Sequential(*layers)
        self.out_channels = cin
        self.output_stride = output_stride

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if not self.return_low_level:
            return self.features(x)
        low = self.features[: self.low_level_index + 1](x)
        return low, self.features[self.low_level_index + 1 :](low)
