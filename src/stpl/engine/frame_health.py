"""Label-free signs of how a model is doing on a video, frame by frame: what `stpl predict` writes to predict.json
and online runs record, so that a user adapting their own video can see whether adaptation helps or collapses.

Per frame, from the video prediction at the model's resolution:
- temporal_consistency: the share of flow-valid pixels whose class in frame t is the class the earlier frame's
  prediction, warped to t by the flow, gives them (None for a frame without an earlier one). A model that
  understands the scene labels the same physical point alike in consecutive frames; flicker lowers it.
- confidence: the mean top-class probability; entropy: the mean entropy divided by log K (0 certain, 1 uniform);
- largest_class_share: the share of pixels of the most frequent class.
A frame reads as collapsed by the training loop's rule (engine/health.py: one class on >= 99 % of the pixels, or
entropy <= 0.001), and a video when its last min(10, half its frames) frames all do.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from stpl.engine.health import CollapseRule, batch_health
from stpl.models.segmenter import SegmenterOutput


@dataclass(frozen=True)
class FrameHealth:
    temporal_consistency: float | None
    confidence: float
    entropy: float
    largest_class_share: float

    def collapsed(self, rule: CollapseRule) -> bool:
        return self.largest_class_share >= rule.largest_share or self.entropy <= rule.entropy_floor


def frame_health(output: SegmenterOutput, has_earlier: bool) -> FrameHealth:
    """The signals of one frame's prediction (batch of one); `has_earlier`: frame t had a real earlier frame."""
    logits = output.logits.detach().float()
    share, entropy = batch_health(logits)
    confidence = logits.softmax(dim=1).amax(dim=1).mean()
    consistency = None
    if has_earlier:
        valid = output.valid
        agree = (logits.argmax(dim=1) == output.warped_logits.detach().argmax(dim=1)) & valid
        consistency = float(agree.sum() / valid.sum()) if bool(valid.any()) else None
    return FrameHealth(consistency, float(confidence), float(entropy), float(share))


class HealthLog:
    """The signals of a video's frames in order, and their summary."""

    def __init__(self, rule: CollapseRule | None = None):
        self.rule = rule or CollapseRule()
        self.frames: list[FrameHealth] = []
        self.streak = 0  # consecutive collapsed frames up to the last one

    def add(self, health: FrameHealth) -> None:
        self.frames.append(health)
        self.streak = self.streak + 1 if health.collapsed(self.rule) else 0

    def collapsing(self) -> bool:
        """The last frames read as collapsed (the window: min(rule.window, half the frames seen, at least 1))."""
        return self.streak >= self.rule.steps_needed(len(self.frames))

    def summary(self) -> dict[str, Any]:
        def mean(values: list[float | None]) -> float | None:
            known = [v for v in values if v is not None and math.isfinite(v)]
            return sum(known) / len(known) if known else None

        fields = ("temporal_consistency", "confidence", "entropy", "largest_class_share")
        means = {name: mean([getattr(frame, name) for frame in self.frames]) for name in fields}
        collapsed_frames = sum(frame.collapsed(self.rule) for frame in self.frames)
        return {**means, "collapsed_frames": collapsed_frames, "collapsed": self.collapsing()}

    def per_frame(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"frame": name, **asdict(frame)} for name, frame in zip(names, self.frames, strict=True)]
