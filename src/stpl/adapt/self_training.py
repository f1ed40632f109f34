"""Plain pseudo-label self-training: STPL without its contrastive term (the ablation SPEC §2.7 calls λ_c = 0).

A teacher (adapt.teacher: frozen source copy, EMA of the student, or the student itself) predicts frame t with the
video model; pixels that pass adapt.confidence (global threshold or class-balanced top fraction), lie inside the
earlier frame (flow-valid) and, with adapt.temporal_agreement, agree with the warped prediction of frame t-k become
pseudo-labels; the student's fused prediction is trained on them with cross-entropy at image resolution. With
the adapt.student_* options the student sees a strong view (adapt/student_view.py). No source data, no contrast.
Hyper-parameters: those of STPL's pseudo-label branch (AdaptConfig defaults, chosen on the adaptation split).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from stpl.adapt.base import AdaptationMethod
from stpl.adapt.shared import (
    CLASS_THRESHOLDS,
    generator_state,
    load_generator_state,
    load_prefixed_state,
    masked_cross_entropy,
    mean_confidence,
    prediction_pseudo_labels,
    prefixed_state,
    teacher_class_thresholds,
)
from stpl.adapt.student_view import strong_view
from stpl.adapt.teachers import LaterLook, Teacher, statistics_source
from stpl.config import AdaptConfig
from stpl.constants import IGNORE_INDEX
from stpl.data.pairs import PairBatch
from stpl.models.segmenter import SegmenterOutput, VideoSegmenter, upsample


class SelfTraining(AdaptationMethod):
    name = "self-training"

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        super().__init__(model, self.settings(config))
        self.teacher = Teacher(self.config.teacher, model, self.config.ema_momentum, self.config.teacher_flip,
                               statistics_of=statistics_source(model, self.config))  # fmt: skip
        self.generator = torch.Generator().manual_seed(seed)
        self.class_thresholds: Tensor | None = None  # the class_median rule's, set by `prepare`

    @staticmethod
    def settings(config: AdaptConfig) -> AdaptConfig:
        """The pseudo-label options this method uses (variants such as VST fix some of them)."""
        return config

    @classmethod
    def looks_ahead(cls, config: AdaptConfig) -> bool:
        return cls.settings(config).teacher_later

    # -- pseudo-labels --------------------------------------------------------------------------------------
    def teach(self, batch: PairBatch) -> tuple[SegmenterOutput, LaterLook | None]:
        """The teacher's prediction of the batch and, with adapt.teacher_later, its look at frame t+k."""
        c = self.config
        later = self.teacher.look_later(batch, c.later_error_limit) if c.teacher_later else None
        return self.teacher.predict(batch), later

    def pseudo_labels(self, teacher: SegmenterOutput, size: tuple[int, int], later: LaterLook | None) -> Tensor:
        """Pseudo-labels at `size` (the image for the cross-entropy; STPL also needs the feature map's)."""
        return prediction_pseudo_labels(teacher, size, self.config, self.class_thresholds, later)

    # -- step -----------------------------------------------------------------------------------------------
    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        size = batch.current.shape[-2:]
        teacher, later = self.teach(batch)
        labels = self.pseudo_labels(teacher, size, later)
        batch, labels = strong_view(batch, labels, self.config, self.generator)
        student = self.model(batch.current, batch.previous, batch.flow)
        loss = masked_cross_entropy(upsample(student.logits, size), labels)
        kept = (labels != IGNORE_INDEX).float().mean()
        return {"loss_pl": loss, "kept_fraction": kept, **self.statistics(teacher), **self.anchor_loss()}

    @staticmethod
    def statistics(teacher: SegmenterOutput) -> dict[str, Tensor]:
        """Logged beside the losses (never optimised): how sure the teacher is of frame t."""
        return {"teacher_confidence": mean_confidence(teacher.logits)}

    def prepare(self, batches: Iterable[PairBatch]) -> None:
        if self.config.confidence == "class_median":
            num_classes = self.model.num_classes
            self.class_thresholds = teacher_class_thresholds(
                self.teacher.predict, batches, num_classes, self.config.threshold
            )

    def after_step(self) -> None:
        self.teacher.update(self.model)

    def extra_state(self) -> dict[str, Tensor]:
        state = generator_state(self.generator)
        if self.class_thresholds is not None:
            state[CLASS_THRESHOLDS] = self.class_thresholds
        if self.teacher.kind != "current":  # a copy of its own; the "current" teacher is the model itself
            state.update(prefixed_state("teacher", self.teacher.model))
        return state

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        if self.teacher.kind != "current":
            load_prefixed_state(state, "teacher", self.teacher.model)
        load_generator_state(state, self.generator)
        if CLASS_THRESHOLDS in state:
            self.class_thresholds = state[CLASS_THRESHOLDS]
