"""Plain pseudo-label self-training: STPL without its contrastive term (the ablation SPEC §2.7 calls λ_c = 0).

A teacher (adapt.teacher: frozen source copy, EMA of the student, or the student itself) predicts frame t with the
video model; pixels that pass adapt.confidence (global threshold or class-balanced top fraction), lie inside the
earlier frame (flow-valid) and, with adapt.temporal_agreement, agree with the warped prediction of frame t-k become
pseudo-labels; the student's fused prediction is trained on them with cross-entropy at image resolution. With
the adapt.student_* options the student sees a strong view (adapt/student_view.py). No source data, no contrast.
Hyper-parameters: those of STPL's pseudo-label branch (AdaptConfig defaults, chosen on the adaptation split).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stpl.adapt.base import AdaptationMethod
from stpl.adapt.shared import (
    generator_state,
    load_generator_state,
    load_prefixed_state,
    masked_cross_entropy,
    prediction_pseudo_labels,
    prefixed_state,
)
from stpl.adapt.student_view import strong_view
from stpl.adapt.teachers import Teacher
from stpl.config import AdaptConfig
from stpl.data.pairs import IGNORE_INDEX, PairBatch
from stpl.models.segmenter import VideoSegmenter, upsample


class SelfTraining(AdaptationMethod):
    name = "self-training"

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        super().__init__(model, self.settings(config))
        self.teacher = Teacher(self.config.teacher, model, self.config.ema_momentum, self.config.teacher_flip)
        self.generator = torch.Generator().manual_seed(seed)

    @staticmethod
    def settings(config: AdaptConfig) -> AdaptConfig:
        """The pseudo-label options this method uses (variants such as VST fix some of them)."""
        return config

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        size = batch.current.shape[-2:]
        c = self.config
        labels = prediction_pseudo_labels(self.teacher.predict(batch), size, c)
        batch, labels = strong_view(batch, labels, c, self.generator)
        student = self.model(batch.current, batch.previous, batch.flow)
        loss = masked_cross_entropy(upsample(student.logits, size), labels)
        return {"loss_pl": loss, "kept_fraction": (labels != IGNORE_INDEX).float().mean()}

    def after_step(self) -> None:
        self.teacher.update(self.model)

    def extra_state(self) -> dict[str, Tensor]:
        state = generator_state(self.generator)
        if self.teacher.kind != "current":  # a copy of its own; the "current" teacher is the model itself
            state.update(prefixed_state("teacher", self.teacher.model))
        return state

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        if self.teacher.kind != "current":
            load_prefixed_state(state, "teacher", self.teacher.model)
        load_generator_state(state, self.generator)
