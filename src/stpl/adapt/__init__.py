"""Adaptation methods. Each is a `Method` (adapt/base.py) built by name from the model and the adapt config.

To add one: write adapt/<name>.py with a Method subclass, add its options (if any) as a dataclass field of
AdaptConfig in config.py, extend AdaptConfig.method's Literal, and register a builder below.
"""

from __future__ import annotations

from collections.abc import Callable

from stpl.adapt.base import Method
from stpl.config import AdaptConfig
from stpl.models.segmenter import VideoSegmenter

__all__ = ["ADAPT_METHODS", "TRAINING_FREE", "build_method"]


def _stpl(model: VideoSegmenter, config: AdaptConfig, seed: int) -> Method:
    from stpl.adapt.stpl import STPL

    return STPL(model, config, seed=seed)


# name -> builder(model, adapt config, seed); training-free methods (below) have no builder
ADAPT_METHODS: dict[str, Callable[[VideoSegmenter, AdaptConfig, int], Method]] = {
    "stpl": _stpl,
}
# Methods that only re-estimate normalisation statistics and train nothing.
TRAINING_FREE = ("adabn",)


def build_method(model: VideoSegmenter, config: AdaptConfig, seed: int) -> Method:
    if config.method not in ADAPT_METHODS:
        raise ValueError(f"unknown adaptation method '{config.method}' (known: {', '.join(ADAPT_METHODS)})")
    return ADAPT_METHODS[config.method](model, config, seed)
