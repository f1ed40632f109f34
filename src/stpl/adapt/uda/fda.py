"""FDA with source data (Yang & Soatto, CVPR 2020, "FDA: Fourier Domain Adaptation for Semantic Segmentation").

Original (DeepLab-v2 from ImageNet, batch 1, SGD 2.5e-4): each source image takes a target image's "style" by
swapping the low-frequency band of its amplitude spectrum for the target's (data/fourier.py, on raw pixel values,
beta 0.01 in its recipe); the segmenter learns the translated source images with their labels, and minimises the
target prediction's entropy under a Charbonnier penalty, (H_n^2 + 1e-8)^eta with eta = 2, weight 0.005
(losses/entropy.py). A self-training round follows: pseudo-labels from the mean prediction of three models trained
with beta 0.01, 0.05 and 0.09, kept per class above the class's 66th-percentile confidence (capped at 0.9), learnt
by cross-entropy beside the two terms above.

Here: one model from the source model (not from ImageNet: the source model is that initialisation after the same
source cross-entropy, so starting from it saves the steps our budget has not). Each source pair (both frames, one
style) takes the amplitude of a target frame t drawn from the step's target batch; the source cross-entropy is
the weighted one of the source recipe (adapt/uda/base.py); the entropy term is on the fused target prediction.
`adapt.uda.fda_self_training` adds the self-training round's loss in the same run, the pseudo-labels from the
frozen starting model (one model, not three) with the release's per-class rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch
from torch import Tensor

from stpl.adapt.self_training import SelfTraining
from stpl.adapt.shared import masked_cross_entropy, teacher_class_thresholds
from stpl.adapt.uda.base import SourceSupervised, resized
from stpl.config import AdaptConfig
from stpl.data.fourier import low_frequency_swap
from stpl.data.pairs import PairBatch, denormalize, normalize
from stpl.losses.entropy import charbonnier_entropy
from stpl.models.segmenter import VideoSegmenter, upsample

FDA_QUANTILE = 0.66  # the release's per-class threshold: the confidence at 66 % of the class's sorted values
FDA_CAP = 0.9


def styled_like(images: Tensor, style: Tensor, beta: float) -> Tensor:
    """ImageNet-normalised `images` with the low-frequency amplitudes of `style` (same shape), swapped in pixel
    values (0-255) as FDA does: a normalised image's mean can be negative, and the amplitude would lose its sign."""
    return normalize(low_frequency_swap(denormalize(images), denormalize(style), beta))


class FDA(SourceSupervised, SelfTraining):
    name = "uda-fda"

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        super().__init__(model, config, seed)
        self.options = config.uda

    @staticmethod
    def settings(config: AdaptConfig) -> AdaptConfig:
        """The self-training round's pseudo-labels: the frozen starting model, FDA's per-class thresholds."""
        return dataclasses.replace(
            config, teacher="source", confidence="class_median", threshold=FDA_CAP, temporal_agreement=False,
            temporal_ensemble=False, teacher_later=False, student_augmentation=0.0, student_scale_range=(),
            student_cutout=0.0,
        )  # fmt: skip

    def prepare(self, batches: Iterable[PairBatch]) -> None:
        if self.options.fda_self_training:
            self.class_thresholds = teacher_class_thresholds(
                self.teacher.predict, batches, self.model.num_classes, FDA_CAP, FDA_QUANTILE
            )

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        source = self.source_of(batch)
        pick = torch.randint(0, batch.current.shape[0], (source.current.shape[0],), generator=self.generator)
        style = resized(batch.current[pick.to(batch.current.device)], source.current.shape[-2:])
        beta = self.options.fda_beta
        translated = self.source_forward(
            styled_like(source.current, style, beta), styled_like(source.previous, style, beta), source.flow
        )
        values = {"loss_source": self.options.lambda_source * self.source_loss(translated, source.label)}
        target = self.model(batch.current, batch.previous, batch.flow)
        entropy = charbonnier_entropy(target.logits, self.options.fda_eta)
        values["loss_entropy"] = self.options.fda_lambda_entropy * entropy
        if self.options.fda_self_training:
            size = batch.current.shape[-2:]
            labels = self.pseudo_labels(self.teacher.predict(batch), size, None)
            values["loss_pl"] = masked_cross_entropy(upsample(target.logits, size), labels)
        return values
