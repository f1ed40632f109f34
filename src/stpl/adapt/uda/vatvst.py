"""VAT-VST with source data (Shin et al., WACV 2021, "Unsupervised Domain Adaptation for Video Semantic
Segmentation").

Original, in two phases: (1) video adversarial training (VAT): the supervised source loss plus a discriminator
that tells source clips' spatio-temporal predictions from target ones, the segmenter trained to fool it;
(2) video self-training (VST) on the target alone: pseudo-labels of the phase-1 model that use the neighbouring
frames through optical flow, learnt by cross-entropy. Its code is not public, and the published text we could read
gives neither the adversarial weight nor the pseudo-label rule; what is open is filled as follows.

Here: phase 1 for the first adapt.uda.vatvst_vat_share of the steps: the source term of adapt/uda/base.py plus
the fooling loss of a spatio-temporal discriminator on [frame t ; the earlier frame warped to t] (DA-VSN's input,
adapt/uda/davsn.py; weight adapt.uda.lambda_adversarial, 0.001 as in the adversarial methods it follows). Phase 2
from then on: target only; at the switch a frozen copy of the model becomes the teacher, its pseudo-labels the
mean of its probabilities for frame t and for the earlier frame warped to t (the flow ensemble), kept where the
class-balanced rule (adapt.class_fraction) and flow validity allow; the fused prediction learns them.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from stpl.adapt.shared import masked_cross_entropy, prediction_pseudo_labels, prefixed_state
from stpl.adapt.teachers import Teacher
from stpl.adapt.uda.adversarial import AdversarialAlignment
from stpl.adapt.uda.base import SourceSupervised
from stpl.adapt.uda.davsn import discriminator_inputs
from stpl.config import AdaptConfig
from stpl.constants import IGNORE_INDEX
from stpl.data.pairs import PairBatch
from stpl.models.segmenter import VideoSegmenter, upsample


class VATVST(SourceSupervised):
    name = "uda-vatvst"

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        super().__init__(model, config)
        device = next(model.parameters()).device
        self.alignment = AdversarialAlignment({"temporal": 2 * model.num_classes}, device, seed)
        self.teacher: Teacher | None = None  # the phase-1 model, frozen at the switch
        self.labels_config = dataclasses.replace(
            config, confidence="class_balanced", temporal_ensemble=True, temporal_agreement=False
        )

    def switch_step(self, iterations: int) -> int:
        return round(self.config.uda.vatvst_vat_share * iterations)

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        if step < self.switch_step(self.config.iterations):
            return self.adversarial_step(batch)
        if self.teacher is None:
            self.teacher = Teacher("source", self.model)  # a frozen copy of the model as phase 1 left it
        return self.self_training_step(batch)

    def adversarial_step(self, batch: PairBatch) -> dict[str, Tensor]:
        source = self.source_of(batch)
        source_output = self.source_forward(source.current, source.previous, source.flow)
        target_output = self.model(batch.current, batch.previous, batch.flow)
        uda = self.config.uda
        fooling = self.alignment.fooling(
            "temporal", discriminator_inputs(source_output)["temporal"], discriminator_inputs(target_output)["temporal"]
        )
        return {
            "loss_source": uda.lambda_source * self.source_loss(source_output, source.label),
            "loss_adversarial_temporal": uda.lambda_adversarial * fooling,
            "discriminator_loss": self.alignment.last_loss,
        }

    def self_training_step(self, batch: PairBatch) -> dict[str, Tensor]:
        assert self.teacher is not None
        size = batch.current.shape[-2:]
        labels = prediction_pseudo_labels(self.teacher.predict(batch), size, self.labels_config)
        student = self.model(batch.current, batch.previous, batch.flow)
        loss = masked_cross_entropy(upsample(student.logits, size), labels)
        return {"loss_vst": loss, "kept_fraction": (labels != IGNORE_INDEX).float().mean()}

    def after_step(self) -> None:
        self.alignment.update()  # nothing to do in phase 2: no maps were kept

    def extra_state(self) -> dict[str, Tensor]:
        state = self.alignment.extra_state()
        if self.teacher is not None:
            state.update(prefixed_state("teacher", self.teacher.model))
        return state

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        self.alignment.load_extra_state(state)
        teacher = {key[len("teacher.") :]: value for key, value in state.items() if key.startswith("teacher.")}
        if teacher:
            self.teacher = Teacher("source", self.model)
            self.teacher.model.load_state_dict(teacher)
