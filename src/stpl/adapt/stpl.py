"""STPL: spatio-temporal pixel-level contrastive source-free adaptation (Lo et al., CVPR 2023).

Per step, for a batch of target pairs (x_{t-k}, x_t, backward flow):
1. The teacher predicts frame t with the video model; confident pixels (global or class-balanced rule, flow-valid,
   optionally agreeing with its warped prediction of frame t-k) become pseudo-labels, both at the feature
   resolution (for the contrast) and at the image resolution (for the cross-entropy).
2. The student computes spatio-temporal embeddings e_t = normalize(P(S(f_t, W(f_{t-k}, o)))).
3. Up to M anchors per pseudo-class are sampled; keys are the same sampled pixels, plus (optionally) the warped
   earlier frame's embeddings at those pixels, whose positive for an anchor includes its own past self.
4. L = λ_c · contrast(seed | infonce form, τ) + λ_pl · CE(fused prediction, pseudo-labels).
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
    nearest_resize,
    prediction_pseudo_labels,
    prefixed_state,
    teacher_class_thresholds,
)
from stpl.adapt.student_view import strong_view
from stpl.adapt.teachers import LaterLook, Teacher
from stpl.config import AdaptConfig
from stpl.data.pairs import IGNORE_INDEX, PairBatch
from stpl.losses.pixel_contrast import pixel_contrastive_loss, sample_per_class
from stpl.models.segmenter import SegmenterOutput, VideoSegmenter, upsample


class STPL(AdaptationMethod):
    name = "stpl"

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        super().__init__(model, config)
        self.teacher = Teacher(config.teacher, model, config.ema_momentum, config.teacher_flip)
        self.generator = torch.Generator().manual_seed(seed)
        self.class_thresholds: Tensor | None = None  # the class_median rule's, set by `prepare`

    # -- pseudo-labels --------------------------------------------------------------------------------------
    def pseudo_labels(self, teacher: SegmenterOutput, size: tuple[int, int], later: LaterLook | None) -> Tensor:
        """Pseudo-labels at `size`: the image (cross-entropy) or the feature map (contrast)."""
        return prediction_pseudo_labels(teacher, size, self.config, self.class_thresholds, later)

    # -- contrast -------------------------------------------------------------------------------------------
    def contrastive_loss(self, student: SegmenterOutput, labels: Tensor) -> Tensor:
        embeddings = student.embeddings
        assert embeddings is not None
        dim = embeddings.shape[1]
        flat_labels = labels.reshape(-1)
        chosen = sample_per_class(flat_labels, self.config.anchors_per_class, self.generator)
        anchors = embeddings.permute(0, 2, 3, 1).reshape(-1, dim)[chosen]
        anchor_labels = flat_labels[chosen]
        if not self.config.cross_frame_keys:
            return pixel_contrastive_loss(
                anchors, anchor_labels, temperature=self.config.temperature, form=self.config.loss_form
            )
        # Cross-frame keys: the earlier frame's own embedding at the same physical points (read through the
        # flow), labelled like its anchor, so each anchor's past self is one of its positives.
        past = self.model.embed(student.warped_features, student.warped_features)
        past = past.permute(0, 2, 3, 1).reshape(-1, dim)[chosen]
        inside = student.valid.reshape(-1)[chosen]
        keys = torch.cat((anchors, past[inside]))
        key_labels = torch.cat((anchor_labels, anchor_labels[inside]))
        identity = torch.zeros(len(anchors), len(keys), dtype=torch.bool, device=anchors.device)
        identity[:, : len(anchors)].fill_diagonal_(True)
        return pixel_contrastive_loss(
            anchors, anchor_labels, keys, key_labels, self.config.temperature, self.config.loss_form, identity
        )

    # -- step -----------------------------------------------------------------------------------------------
    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        c = self.config
        teacher = self.teacher.predict(batch)
        later = self.teacher.look_later(batch, c.later_error_limit) if c.teacher_later else None
        size = batch.current.shape[-2:]
        labels = self.pseudo_labels(teacher, size, later)
        batch, labels = strong_view(batch, labels, self.config, self.generator)
        need_embeddings = self.config.lambda_contrast > 0
        student = self.model(batch.current, batch.previous, batch.flow, with_embeddings=need_embeddings)
        out: dict[str, Tensor] = {}
        if self.config.lambda_pl > 0:
            out["loss_pl"] = self.config.lambda_pl * masked_cross_entropy(upsample(student.logits, size), labels)
            out["kept_fraction"] = (labels != IGNORE_INDEX).float().mean()
        if need_embeddings:
            feature_size = student.logits.shape[-2:]
            if self.config.student_scale_range:  # the student's geometry: its labels, subsampled
                feature_labels = nearest_resize(labels, feature_size)
            else:
                feature_labels = self.pseudo_labels(teacher, feature_size, later)
            out["loss_contrast"] = self.config.lambda_contrast * self.contrastive_loss(student, feature_labels)
        return {**out, **self.anchor_loss()}

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
        if self.config.teacher != "current":
            state.update(prefixed_state("teacher", self.teacher.model))
        return state

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        load_prefixed_state(state, "teacher", self.teacher.model)
        load_generator_state(state, self.generator)
        if CLASS_THRESHOLDS in state:
            self.class_thresholds = state[CLASS_THRESHOLDS]
