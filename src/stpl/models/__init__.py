"""Models: backbones, warping, fusion blocks, heads and the video segmenter, built from a config by `build_model`."""

from __future__ import annotations

from stpl.config import ModelConfig
from stpl.models.backbones import build_backbone
from stpl.models.segmenter import SegmenterOutput, VideoSegmenter, upsample

__all__ = ["SegmenterOutput", "VideoSegmenter", "build_model", "upsample"]


def build_model(config: ModelConfig, num_classes: int, load_pretrained: bool = True) -> VideoSegmenter:
    """`load_pretrained=False` skips ImageNet weights when a checkpoint will overwrite them anyway."""
    backbone = build_backbone(
        config.backbone, config.output_stride, config.pretrained and load_pretrained, config.weights_path
    )
    return VideoSegmenter(
        backbone,
        num_classes,
        feature_channels=config.feature_channels,
        aspp_rates=config.aspp_rates,
        fusion=config.fusion,
        projection_dim=config.projection_dim,
    )
