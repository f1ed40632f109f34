"""VAT-VST source-free (Shin et al., WACV 2021, "Unsupervised Domain Adaptation for Video Semantic Segmentation").

Original: two phases. (1) Video adversarial training (VAT): source supervision plus a discriminator aligning
source and target video predictions. (2) Video self-training (VST) on target only: pseudo-labels from the phase-1
model, kept only where they are temporally consistent (the prediction of frame t agrees with the prediction of
the earlier frame propagated to t by optical flow) and confident under class-balanced (CBST-style per-class)
thresholds, then cross-entropy training on them.

Source-free (VAT-VST*): phase 1 needs source data and is dropped; the source model plays the phase-1 model. So:
a frozen copy of the starting model (pseudo-labels are fixed, as VST's offline labels) predicts frame t; pixels
are kept where its fused prediction agrees with its warped prediction of t-k, they are flow-valid, and they are in
the top adapt.class_fraction of their predicted class's confidences (class-balanced); the student's fused
prediction learns them by cross-entropy. Thresholds are per batch, not over the whole target set as in CBST.
Hyper-parameters: teacher, rule and agreement fixed as above (the toolkit's temporal teacher options, averaging
with t-k or t+k, are not VST's and stay off); the class fraction is the toolkit's shared
adapt.class_fraction (the VST paper's per-class proportion could not be recovered; CBST starts at 0.2).
"""

from __future__ import annotations

import dataclasses

from stpl.adapt.self_training import SelfTraining
from stpl.config import AdaptConfig


class VST(SelfTraining):
    name = "vst"

    @staticmethod
    def settings(config: AdaptConfig) -> AdaptConfig:
        return dataclasses.replace(
            config,
            teacher="source",
            confidence="class_balanced",
            temporal_agreement=True,
            temporal_ensemble=False,  # VST's own temporal rule is the agreement above, not an average
            teacher_later=False,
        )
