"""STPL: spatio-temporal pixel-level contrastive source-free adaptation (Lo et al., CVPR 2023).

STPL is self-training (adapt/self_training.py: teacher, pseudo-label rules, student view) plus a pixel contrast on
the student's spatio-temporal embeddings. Per step, for a batch of target pairs (x_{t-k}, x_t, backward flow):
1. The teacher predicts frame t with the video model; confident pixels (global, class-balanced or class-median rule,
   flow-valid, optionally agreeing with its warped prediction of frame t-k) become pseudo-labels, both at the
   feature resolution (for the contrast) and at the image resolution (for the cross-entropy).
2. The student computes spatio-temporal embeddings e_t = normalize(P(S(f_t, W(f_{t-k}, o)))).
3. Up to M anchors per pseudo-class are sampled; keys are the same sampled pixels, plus (optionally) the warped
   earlier frame's embeddings at those pixels, whose positive for an anchor includes its own past self.
4. L = λ_c · contrast(seed | infonce form, τ) + λ_pl · CE(fused prediction, pseudo-labels).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stpl.adapt.self_training import SelfTraining
from stpl.adapt.shared import masked_cross_entropy, nearest_resize
from stpl.adapt.student_view import strong_view
from stpl.constants import IGNORE_INDEX
from stpl.data.pairs import PairBatch
from stpl.engine import distributed
from stpl.losses.pixel_contrast import pixel_contrastive_loss, sample_per_class
from stpl.models.segmenter import SegmenterOutput, upsample


class STPL(SelfTraining):
    name = "stpl"

    # -- contrast -------------------------------------------------------------------------------------------
    def contrastive_loss(self, student: SegmenterOutput, labels: Tensor) -> Tensor:
        embeddings = student.embeddings
        assert embeddings is not None
        dim = embeddings.shape[1]
        flat_labels = labels.reshape(-1)
        chosen = sample_per_class(flat_labels, self.config.anchors_per_class, self.generator)
        anchors = embeddings.permute(0, 2, 3, 1).reshape(-1, dim)[chosen]
        anchor_labels = flat_labels[chosen]
        past = past_labels = None
        if self.config.cross_frame_keys:
            # Cross-frame keys: the earlier frame's own embedding at the same physical points (read through the
            # flow), labelled like its anchor, so each anchor's past self is one of its positives.
            warped = self.model.embed(student.warped_features, student.warped_features)
            inside = student.valid.reshape(-1)[chosen]
            past = warped.permute(0, 2, 3, 1).reshape(-1, dim)[chosen][inside]
            past_labels = anchor_labels[inside]
        return contrast_with_keys(
            anchors, anchor_labels, past, past_labels, self.config.temperature, self.config.loss_form,
            gather=self.config.gather_keys,
        )  # fmt: skip

    # -- step -----------------------------------------------------------------------------------------------
    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        c = self.config
        teacher, later = self.teach(batch)
        size = batch.current.shape[-2:]
        labels = self.pseudo_labels(teacher, size, later)
        batch, labels = strong_view(batch, labels, c, self.generator)
        need_embeddings = c.lambda_contrast > 0
        student = self.model(batch.current, batch.previous, batch.flow, with_embeddings=need_embeddings)
        out: dict[str, Tensor] = {}
        if c.lambda_pl > 0:
            out["loss_pl"] = c.lambda_pl * masked_cross_entropy(upsample(student.logits, size), labels)
            out["kept_fraction"] = (labels != IGNORE_INDEX).float().mean()
        if need_embeddings:
            feature_size = student.logits.shape[-2:]
            if c.student_scale_range:  # the student's geometry: its labels, subsampled
                feature_labels = nearest_resize(labels, feature_size)
            else:
                feature_labels = self.pseudo_labels(teacher, feature_size, later)
            out["loss_contrast"] = c.lambda_contrast * self.contrastive_loss(student, feature_labels)
        return {**out, **self.statistics(teacher), **self.anchor_loss()}


def contrast_with_keys(
    anchors: Tensor,
    anchor_labels: Tensor,
    extra_keys: Tensor | None,
    extra_labels: Tensor | None,
    temperature: float,
    form: str,
    gather: bool = False,
) -> Tensor:
    """The pixel contrast of `anchors` against the keys: the anchors themselves (each excluded from its own
    positives) plus `extra_keys` (e.g. their past selves). gather: with several processes, every process's keys
    (the contrast of the global batch: more negatives, rare classes met across processes); gradients reach each
    process's own embeddings."""
    if extra_keys is None and not gather:
        return pixel_contrastive_loss(anchors, anchor_labels, temperature=temperature, form=form)
    keys, key_labels = anchors, anchor_labels
    if extra_keys is not None:
        keys, key_labels = torch.cat((anchors, extra_keys)), torch.cat((anchor_labels, extra_labels))
    offset = 0
    if gather:
        keys, offset = distributed.gather_rows(keys, with_gradient=True)
        key_labels, _ = distributed.gather_rows(key_labels)
    identity = torch.zeros(len(anchors), len(keys), dtype=torch.bool, device=anchors.device)
    identity[:, offset : offset + len(anchors)].fill_diagonal_(True)
    return pixel_contrastive_loss(anchors, anchor_labels, keys, key_labels, temperature, form, identity)
