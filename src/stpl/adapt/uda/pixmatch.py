"""PixMatch with source data (Melas-Kyriazi & Manrai, CVPR 2021, "PixMatch: Unsupervised Domain Adaptation via
Pixelwise Consistency Training").

Original (DeepLab-v2 started from a source-trained model, batch 1, SGD 1e-4): source cross-entropy plus a target
consistency term: the prediction on the clean target image, without gradient, gives hard pseudo-labels (argmax,
no confidence threshold) that the prediction on a perturbed copy learns by cross-entropy, weight 0.1 (lam_aug of
its baseline). The default perturbation is an augmentation: a random resized crop (0.2-1 of the area; the labels
cropped alike), colour jitter (p 0.8), greyscale (p 0.2) and blur (p 0.5); Fourier and CutMix perturbations are
alternatives in the release.

Here: the source term of adapt/uda/base.py; the clean prediction is the current model's in eval mode (its stored,
target statistics), its argmax over every flow-valid pixel; the perturbed copy is the toolkit's strong view
(adapt/student_view.py): a zoom of adapt.uda.pixmatch_scale_range (1-2, the crop's 0.2-1 of the area) and
photometric noise of strength pixmatch_augmentation, the same for both frames of the pair.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from stpl.adapt.self_training import SelfTraining
from stpl.adapt.uda.base import SourceSupervised
from stpl.config import AdaptConfig
from stpl.data.pairs import PairBatch


class PixMatch(SourceSupervised, SelfTraining):
    name = "uda-pixmatch"
    default_source_statistics = "shared"  # held out on camvid-dusk: better than "own" (docs/uda.md)

    @staticmethod
    def settings(config: AdaptConfig) -> AdaptConfig:
        """Self-training as PixMatch's consistency: the model itself labels every pixel, the student sees a
        perturbed view."""
        uda = config.uda
        return dataclasses.replace(
            config, teacher="current", confidence="global", threshold=0.0, temporal_agreement=False,
            temporal_ensemble=False, teacher_later=False, student_augmentation=uda.pixmatch_augmentation,
            student_scale_range=uda.pixmatch_scale_range, student_cutout=0.0,
        )  # fmt: skip

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        # The source term first: the collapse watch (engine/health.py) reads the step's last forward pass, which
        # must be a target one.
        source = self.config.uda.lambda_source * self.supervised_source(batch)
        values = super().step(batch, step)  # the consistency term, as self-training on the perturbed view
        values["loss_pl"] = self.config.uda.pixmatch_lambda * values["loss_pl"]
        return {**values, "loss_source": source}
