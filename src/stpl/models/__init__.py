"""Models: backbones, warping, fusion blocks, heads and the video segmenter, built from a config by `build_model`."""

from __future__ import annotations

from torch import nn

from stpl.config import ModelConfig
from stpl.models.backbones import build_backbone
from stpl.models.deeplabv2 import build_deeplabv2
from stpl.models.heads import ASPP, LRASPP
from stpl.models.segmenter import SegmenterOutput, VideoSegmenter, upsample

__all__ = ["SegmenterOutput", "VideoSegmenter", "build_model", "upsample"]


def build_model(config: ModelConfig, num_classes: int, load_pretrained: bool = True) -> VideoSegmenter:
    """`load_pretrained=False` skips ImageNet weights when a checkpoint will overwrite them anyway."""
    if config.backbone == "resnet101_deeplabv2":  # its own neck and classifier (DeepLab-v2 ASPP heads)
        model = build_deeplabv2(config, num_classes, load_pretrained)
        model.warp_error_limit = config.warp_error_limit
        return model
    lraspp = config.head == "lraspp"
    backbone = build_backbone(
        config.backbone, config.output_stride, config.pretrained and load_pretrained, config.weights_path, lraspp
    )
    neck: nn.Module
    if lraspp:  # stride-8 features: the deep branch (C channels) and the backbone's own stride-8 features
        neck = LRASPP(backbone.low_channels, backbone.out_channels, config.feature_channels)
        channels = neck.out_channels
        classifier: nn.Module = nn.Conv2d(channels, num_classes, 1)
    else:
        channels = config.feature_channels
        neck = ASPP(backbone.out_channels, channels, config.aspp_rates)
        classifier = nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(channels, num_classes, 1))
    return VideoSegmenter(
        backbone,
        neck,
        classifier,
        num_classes,
        feature_channels=channels,
        fusion=config.fusion,
        projection_dim=config.projection_dim,
        warp_error_limit=config.warp_error_limit,
    )
