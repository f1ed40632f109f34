"""CoTTA: continual test-time adaptation (Wang et al., CVPR 2022), as a stream baseline (`cotta-online`).

Original (SegFormer on Cityscapes -> ACDC, ten rounds of fog, night, rain, snow): a mean teacher, an exponential
moving average of the student (0.999), predicts each test batch; when the frozen source model's confidence on it is
below a threshold, the teacher's prediction is replaced by its mean over augmented copies (several scales and
horizontal flips), so the pseudo-label is both weight- and augmentation-averaged. The student learns it by the
cross-entropy with the teacher's probabilities as soft targets; after each step every weight is restored to its
source value with a small probability (0.01), which keeps the source knowledge from drifting away over a long
stream.

Here: the video model's fused prediction throughout; the confidence is the frozen source copy's mean top-class
probability over the batch; the augmented copies are adapt.cotta.scales x (as is, mirrored), each prediction brought
back to the image's size and orientation before averaging probabilities; restore per weight element with
probability adapt.cotta.restore_probability, drawn from the method's own seeded generator. Threshold: CoTTA's
classification releases use 0.92 (CIFAR10-C) and 0.72 (CIFAR100-C); the segmentation release's value could not be
read here, so adapt.cotta.threshold (0.9) is an open setting, to be chosen on held-out streams.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stpl.adapt.base import AdaptationMethod
from stpl.adapt.shared import (
    generator_state,
    load_generator_state,
    load_prefixed_state,
    mean_confidence,
    prefixed_state,
)
from stpl.adapt.teachers import Teacher, mirror_pair, statistics_source
from stpl.config import AdaptConfig
from stpl.data.pairs import PairBatch
from stpl.models.segmenter import VideoSegmenter, upsample

Predict = Callable[[Tensor, Tensor, Tensor], Tensor]  # (frame t, frame t-k, flow) -> logits


def augmentation_averaged(predict: Predict, batch: PairBatch, scales: Sequence[float], flip: bool) -> Tensor:
    """The mean of softmax probabilities [B,K,H,W] (H, W the batch's image size) over the pair rescaled by each of
    `scales` and, with `flip`, also mirrored; every prediction is resized back (and mirrored back) first. The flow
    keeps its own grid (the model resizes it to its features)."""
    size = batch.current.shape[-2:]
    views: list[tuple[Tensor, Tensor, Tensor, bool]] = [(batch.current, batch.previous, batch.flow, False)]
    if flip:
        views.append((*mirror_pair(batch), True))
    total: Tensor | None = None
    count = 0
    for current, previous, flow, mirrored in views:
        for scale in scales:
            scaled = [
                F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=False) if scale != 1 else image
                for image in (current, previous)
            ]
            probabilities = upsample(predict(scaled[0], scaled[1], flow).float(), size).softmax(dim=1)
            if mirrored:
                probabilities = probabilities.flip(-1)
            total = probabilities if total is None else total + probabilities
            count += 1
    assert total is not None, "at least one scale is needed"
    return total / count


@torch.no_grad()
def stochastic_restore(model: nn.Module, source: dict[str, Tensor], probability: float, generator: torch.Generator):
    """Each element of each trainable weight goes back to its source value with `probability`."""
    if probability <= 0:
        return
    for name, parameter in model.named_parameters():
        if name in source:
            draw = torch.rand(parameter.shape, generator=generator).to(parameter.device)
            parameter.copy_(torch.where(draw < probability, source[name], parameter))


class CoTTA(AdaptationMethod):
    name = "cotta"

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        super().__init__(model, config)
        self.options = config.cotta
        follow = statistics_source(model, config)  # online: the stream's statistics, as the original's batch's
        self.teacher = Teacher("ema", model, self.options.ema_momentum, statistics_of=follow)
        # the frozen starting model: its confidence decides augmentation
        self.anchor = Teacher("source", model, statistics_of=follow)
        self.source = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        self.generator = torch.Generator().manual_seed(seed)

    def teacher_probabilities(self, batch: PairBatch) -> tuple[Tensor, Tensor]:
        """(the pseudo-label probabilities at the image size, the anchor's confidence)."""
        confidence = mean_confidence(self.anchor.predict(batch).logits)
        if float(confidence) < self.options.threshold:

            def predict(current: Tensor, previous: Tensor, flow: Tensor) -> Tensor:
                return self.teacher.predict(PairBatch(current, previous, flow, None, batch.index)).logits

            return augmentation_averaged(predict, batch, self.options.scales, flip=True), confidence
        logits = self.teacher.predict(batch).logits
        return upsample(logits.float(), batch.current.shape[-2:]).softmax(dim=1), confidence

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        with torch.no_grad():
            targets, confidence = self.teacher_probabilities(batch)
        student = self.model(batch.current, batch.previous, batch.flow)
        log_probabilities = upsample(student.logits, batch.current.shape[-2:]).float().log_softmax(dim=1)
        loss = -(targets * log_probabilities).sum(dim=1).mean()
        return {"loss_consistency": loss, "anchor_confidence": confidence}

    def after_step(self) -> None:
        self.teacher.update(self.model)
        stochastic_restore(self.model, self.source, self.options.restore_probability, self.generator)

    def extra_state(self) -> dict[str, Tensor]:
        return {**generator_state(self.generator), **prefixed_state("teacher", self.teacher.model)}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        load_prefixed_state(state, "teacher", self.teacher.model)
        load_generator_state(state, self.generator)
