"""ResNet-101 DeepLab-v2, the ACCEL setting of DA-VSN (ICCV 2021) and TPS (ECCV 2022), as a `VideoSegmenter`.

Architecture (facts from the peers' `accel_deeplabv2.py`, see `accel_import`):
- ResNet-101 with Bottleneck blocks [3, 4, 23, 3]; the stride of a block sits on its first 1x1 conv (not on the
  3x3 as in torchvision); layer3 and layer4 keep stride 1 with dilation 2 and 4 in every block: output stride 8.
  The stem max-pool uses ceil_mode, so H input rows give ceil((floor(ceil(H/2) / 2) + 1) / 2) feature rows:
  33x41 -> 5x6, 512x1024 -> 65x129.
- Batch norm is frozen (fixed statistics and affine): `FrozenBatchNorm2d` holds buffers only, so neither an
  optimiser nor `model.train()` nor stpl's norm modes (AdaBN, which look for `_BatchNorm`) change it.
- DeepLab-v2 ASPP classifiers: the sum of four 3x3 convs with dilation 6, 12, 18, 24 (weights N(0, 0.01)); the main
  one on layer4 (2048 ch). The peers also have an auxiliary one on layer3 (1024 ch), trained with loss weight 0.1
  and unused at test time (their evaluation takes the main prediction only).

Mapping onto VideoSegmenter(backbone, neck, classifier): the backbone returns layer4 (2048 channels), the neck is
the identity and the classifier is the main ASPP, so the fusion block and projection head see layer4 features and
the logits are exactly the peers' main prediction. With `model.aux_weight` > 0 the backbone returns
[layer3 ; layer4] (3072 channels) and the classifier returns main + aux_weight * aux logits; fusion and projection
then also see layer3 (VideoSegmenter has one feature tensor for both the classifier and the fusion block).

Input: stpl feeds ImageNet-normalised RGB. The peers' weights expect Caffe-style BGR in 0..255 minus a per-channel
mean; `model.input_format=caffe_bgr` adds the fixed conversion in front of the network (no parameters).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from stpl.errors import StplError
from stpl.models.segmenter import VideoSegmenter
from stpl.models.tensor_files import load_tensor_file

RESNET101_LAYERS = (3, 4, 23, 3)
ASPP_RATES = (6, 12, 18, 24)
LAYER3_CHANNELS, LAYER4_CHANNELS = 1024, 2048
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)  # the peers' IMG_MEAN, BGR order, 0..255 scale
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # stpl's input normalisation (RGB)
INPUT_FORMATS = ("imagenet", "caffe_bgr")


class FrozenBatchNorm2d(nn.Module):
    """y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, all four fixed buffers.

    State-dict names match nn.BatchNorm2d (without num_batches_tracked), so ImageNet and peer files load as is.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


class Bottleneck(nn.Module):
    """1x1 (stride) -> 3x3 (dilation) -> 1x1 (x4 channels), plus a 1x1 projection shortcut where shapes change."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1, project: bool = False):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, stride=stride, bias=False)  # DeepLab-v2: stride on the 1x1
        self.bn1 = FrozenBatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), FrozenBatchNorm2d(cout))
            if project
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class CaffeInput(nn.Module):
    """ImageNet-normalised RGB -> BGR in 0..255 minus CAFFE_BGR_MEAN, the input the peers' weights were trained on."""

    def __init__(self):
        super().__init__()
        # Per output (BGR) channel: x_bgr = x_rgb[flipped] * 255 * std + (255 * mean - caffe_mean).
        std = torch.tensor(IMAGENET_STD[::-1]) * 255.0
        shift = torch.tensor(IMAGENET_MEAN[::-1]) * 255.0 - torch.tensor(CAFFE_BGR_MEAN)
        self.register_buffer("scale", std.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x.flip(1) * self.scale + self.shift


def _make_layer(cin: int, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    # Every layer's first block projects its shortcut (the channel count changes in all four layers).
    layers = [Bottleneck(cin, planes, stride, dilation, project=True)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes, 1, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet101DeepLabV2(nn.Module):
    """x [B,3,H,W] -> layer4 [B,2048,h,w], or [layer3 ; layer4] [B,3072,h,w] when `multi_level` (h ~ H/8)."""

    def __init__(
        self, layers: tuple[int, ...] = RESNET101_LAYERS, multi_level: bool = False, input_format: str = "imagenet"
    ):
        super().__init__()
        if input_format not in INPUT_FORMATS:
            raise StplError(f"unknown model.input_format '{input_format}' (known: {', '.join(INPUT_FORMATS)})")
        self.input_format = input_format
        self.multi_level = multi_level
        self.adapt_input = CaffeInput() if input_format == "caffe_bgr" else nn.Identity()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.layer1 = _make_layer(64, 64, layers[0], stride=1, dilation=1)
        self.layer2 = _make_layer(256, 128, layers[1], stride=2, dilation=1)
        self.layer3 = _make_layer(512, 256, layers[2], stride=1, dilation=2)
        self.layer4 = _make_layer(1024, 512, layers[3], stride=1, dilation=4)
        self.out_channels = LAYER3_CHANNELS + LAYER4_CHANNELS if multi_level else LAYER4_CHANNELS
        self.output_stride = 8
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # only matters without ImageNet weights
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.adapt_input(x)))))
        layer3 = self.layer3(self.layer2(self.layer1(x)))
        layer4 = self.layer4(layer3)
        return torch.cat((layer3, layer4), dim=1) if self.multi_level else layer4


class DilatedSumClassifier(nn.Module):
    """DeepLab-v2's ASPP classifier: sum over rates r of a 3x3 conv with dilation r straight to class scores."""

    def __init__(self, cin: int, num_classes: int, rates: tuple[int, ...] = ASPP_RATES):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(cin, num_classes, 3, padding=rate, dilation=rate, bias=True) for rate in rates
        )
        for branch in self.branches:
            nn.init.normal_(branch.weight, std=0.01)
            nn.init.zeros_(branch.bias)  # the peers leave PyTorch's default; zero starts every class alike

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class DeepLabV2Head(nn.Module):
    """layer4 -> main logits; with an aux head, [layer3 ; layer4] -> main(layer4) + aux_weight * aux(layer3)."""

    def __init__(self, num_classes: int, aux_weight: float = 0.0):
        super().__init__()
        self.aux_weight = aux_weight
        self.main = DilatedSumClassifier(LAYER4_CHANNELS, num_classes)
        self.aux = DilatedSumClassifier(LAYER3_CHANNELS, num_classes) if aux_weight > 0 else None

    def forward(self, features: Tensor) -> Tensor:
        if self.aux is None:
            return self.main(features)
        layer3, layer4 = features[:, :LAYER3_CHANNELS], features[:, LAYER3_CHANNELS:]
        return self.main(layer4) + self.aux_weight * self.aux(layer3)


def _read_imagenet_state(path: Path, input_format: str) -> dict[str, Tensor]:
    """A torchvision ResNet-101 file (RGB, ImageNet-normalised) or ADVENT's Caffe-converted DeepLab init (BGR).

    The latter's names carry one extra leading part (the peers' loaders drop `name.split('.')[0]`, believed to be
    "Scale"), and its layer5 is a classifier of its own.
    """
    state = load_tensor_file(path, "ImageNet weights")
    caffe = "conv1.weight" not in state and len({key.split(".", 1)[0] for key in state}) == 1
    if caffe:
        state = {key.split(".", 1)[1]: value for key, value in state.items()}
    expected = "caffe_bgr" if caffe else "imagenet"
    if input_format != expected:
        kind = "Caffe DeepLab (BGR, 0..255)" if caffe else "torchvision (ImageNet-normalised RGB)"
        raise StplError(f"{path} holds {kind} weights: set model.input_format={expected}")
    # fc (torchvision) and layer5 (the Caffe file's own classifier) are not part of the backbone.
    return {
        key: value
        for key, value in state.items()
        if not key.startswith(("fc.", "layer5.")) and not key.endswith("num_batches_tracked")
    }


def load_imagenet_weights(backbone: ResNet101DeepLabV2, path: str | Path) -> None:
    path = Path(path).expanduser()
    if not path.is_file():
        raise StplError(f"ImageNet weights not found at model.weights_path={path}")
    state = _read_imagenet_state(path, backbone.input_format)
    try:
        backbone.load_state_dict(state)
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0]
        raise StplError(f"{path} does not fit resnet101_deeplabv2: {first_line}") from None


def deeplabv2_segmenter(
    num_classes: int,
    aux_weight: float = 0.0,
    input_format: str = "imagenet",
    fusion: str = "conv",
    projection_dim: int = 128,
    layers: tuple[int, ...] = RESNET101_LAYERS,
) -> VideoSegmenter:
    """`layers` other than [3, 4, 23, 3] only make small test networks with the same names and widths."""
    backbone = ResNet101DeepLabV2(layers, multi_level=aux_weight > 0, input_format=input_format)
    return VideoSegmenter(
        backbone,
        nn.Identity(),
        DeepLabV2Head(num_classes, aux_weight),
        num_classes,
        feature_channels=backbone.out_channels,
        fusion=fusion,
        projection_dim=projection_dim,
    )


def build_deeplabv2(
    num_classes: int,
    *,
    pretrained: bool,
    weights_path: str,
    aux_weight: float,
    input_format: str,
    fusion: str,
    projection_dim: int,
    warp_error_limit: float = 0.0,
) -> VideoSegmenter:
    """model.output_stride, feature_channels and aspp_rates do not apply: DeepLab-v2 fixes output stride 8 and the
    features (layer4's 2048 channels, or [layer3 ; layer4]'s 3072 when model.aux_weight > 0).
    """
    if aux_weight < 0:
        raise StplError(f"model.aux_weight must be >= 0, got {aux_weight}")
    # Checked before building: no ResNet-101 weights ship offline and nothing is downloaded.
    if pretrained and not weights_path:
        raise StplError(
            "no ImageNet weights for resnet101_deeplabv2 (none ship offline, nothing is downloaded): give a "
            "torchvision ResNet-101 state dict (or ADVENT's DeepLab_resnet_pretrained_imagenet.pth with "
            "model.input_format=caffe_bgr) as model.weights_path=PATH, or set model.pretrained=false"
        )
    if pretrained and not Path(weights_path).expanduser().is_file():
        raise StplError(f"ImageNet weights not found at model.weights_path={weights_path}")
    model = deeplabv2_segmenter(num_classes, aux_weight, input_format, fusion, projection_dim)
    model.warp_error_limit = warp_error_limit
    if pretrained:
        load_imagenet_weights(model.backbone, weights_path)
    return model
