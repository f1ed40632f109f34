"""Models: backbones, warping, fusion blocks, heads and the video segmenter, built by `build_model` from plain
keyword arguments (a config's are `ModelConfig.network_options()`)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from stpl.models.backbones import build_backbone
from stpl.models.deeplabv2 import build_deeplabv2
from stpl.models.heads import ASPP, LRASPP
from stpl.models.segmenter import SegmenterOutput, VideoSegmenter, upsample

__all__ = ["SegmenterOutput", "VideoSegmenter", "build_model", "upsample"]


def build_model(
    num_classes: int,
    *,
    backbone: str = "mobilenet_v2",
    pretrained: bool = True,
    weights_path: str = "",
    output_stride: int = 16,
    head: str = "lraspp",
    feature_channels: int = 128,
    aspp_rates: Sequence[int] = (2, 4, 6),
    fusion: str = "conv",
    projection_dim: int = 128,
    warp_error_limit: float = 0.0,
    aux_weight: float = 0.0,
    input_format: str = "imagenet",
) -> VideoSegmenter:
    """The video segmenter; each argument is the model.* config key of the same name (config/schema.py says why).
    `pretrained` loads ImageNet weights (False when a checkpoint will overwrite them anyway)."""
    if backbone == "resnet101_deeplabv2":  # its own neck and classifier (DeepLab-v2 ASPP heads)
        return build_deeplabv2(
            num_classes,
            pretrained=pretrained,
            weights_path=weights_path,
            aux_weight=aux_weight,
            input_format=input_format,
            fusion=fusion,
            projection_dim=projection_dim,
            warp_error_limit=warp_error_limit,
        )
    lraspp = head == "lraspp"
    encoder = build_backbone(backbone, output_stride, pretrained, weights_path, lraspp)
    neck: nn.Module
    if lraspp:  # stride-8 features: the deep branch (C channels) and the backbone's own stride-8 features
        neck = LRASPP(encoder.low_channels, encoder.out_channels, feature_channels)
        channels = neck.out_channels
        classifier: nn.Module = nn.Conv2d(channels, num_classes, 1)
    else:
        channels = feature_channels
        neck = ASPP(encoder.out_channels, channels, tuple(aspp_rates))
        classifier = nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(channels, num_classes, 1))
    return VideoSegmenter(
        encoder,
        neck,
        classifier,
        num_classes,
        feature_channels=channels,
        fusion=fusion,
        projection_dim=projection_dim,
        warp_error_limit=warp_error_limit,
    )
