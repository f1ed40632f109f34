"""Adaptation methods. Each is a `Method` (adapt/base.py) built by name from the model and the adapt config.

To add one: write adapt/<name>.py with a Method subclass, add its options (if any) as a dataclass field of
AdaptConfig in config.py, extend AdaptConfig.method's Literal, and register a builder below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from stpl.adapt.base import Method
from stpl.config import AdaptConfig
from stpl.models.segmenter import VideoSegmenter

__all__ = ["ADAPT_METHODS", "TRAINING_FREE", "build_method"]


def _stpl(model: VideoSegmenter, config: AdaptConfig, seed: int) -> Method:
    from stpl.adapt.stpl import STPL

    return STPL(model, config, seed=seed)


def _baseline(module: str, class_name: str) -> Callable[[VideoSegmenter, AdaptConfig, int], Method]:
    """Builder of a baseline in adapt/<module>.py, imported only when asked for."""

    def build(model: VideoSegmenter, config: AdaptConfig, seed: int) -> Method:
        return getattr(importlib.import_module(f"stpl.adapt.{module}"), class_name)(model, config, seed=seed)

    return build


# name -> builder(model, adapt config, seed); training-free methods (below) have no builder
ADAPT_METHODS: dict[str, Callable[[VideoSegmenter, AdaptConfig, int], Method]] = {
    "stpl": _stpl,
    # source-free baselines (SPEC §3)
    "tent": _baseline("tent", "Tent"),
    "self-training": _baseline("self_training", "SelfTraining"),
    "ur": _baseline("ur", "UR"),
    "hcl": _baseline("hcl", "HCL"),
    "tps": _baseline("tps", "TPS"),
    "davsn": _baseline("davsn", "DAVSN"),
    "vst": _baseline("vst", "VST"),
}
# Methods that only re-estimate normalisation statistics and train nothing.
TRAINING_FREE = ("adabn",)


def build_method(model: VideoSegmenter, config: AdaptConfig, seed: int) -> Method:
    if config.method not in ADAPT_METHODS:
        raise ValueError(f"unknown adaptation method '{config.method}' (known: {', '.join(ADAPT_METHODS)})")
    return ADAPT_METHODS[config.method](model, config, seed)
