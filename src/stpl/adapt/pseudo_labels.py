"""Confidence-filtered pseudo-labels: argmax of a teacher's probabilities, unconfident and invalid pixels ignored."""

from __future__ import annotations

import torch
from torch import Tensor

from stpl.data.pairs import IGNORE_INDEX


def global_threshold_mask(confidence: Tensor, threshold: float) -> Tensor:
    return confidence >= threshold


def class_balanced_mask(
    confidence: Tensor, prediction: Tensor, fraction: float, candidates: Tensor | None = None
) -> Tensor:
    """Keep the most confident `fraction` of the candidate pixels predicted as each class (rare classes keep some).

    candidates: pixels eligible at all (e.g. flow-valid); the fraction is of those, not of the whole map.
    """
    keep = torch.zeros_like(prediction, dtype=torch.bool)
    eligible = torch.ones_like(keep) if candidates is None else candidates
    for value in torch.unique(prediction[eligible]):
        members = (prediction == value) & eligible
        scores = confidence[members]
        count = max(1, round(fraction * scores.numel()))
        # The count-th largest confidence is the class's threshold (ties may keep a few more).
        cutoff = torch.topk(scores, count, sorted=False).values.min()
        keep |= members & (confidence >= cutoff)
    return keep


def make_pseudo_labels(
    probabilities: Tensor,
    valid: Tensor | None = None,
    rule: str = "class_balanced",
    threshold: float = 0.9,
    fraction: float = 0.5,
    agree_with: Tensor | None = None,
) -> Tensor:
    """probabilities [B,K,H,W] -> labels [B,H,W] long with IGNORE_INDEX where not kept.

    valid [B,H,W]: pixels to consider at all (e.g. flow inside the earlier frame); agree_with [B,H,W]: labels
    (e.g. the warped prediction of frame t-k) that a kept pixel must match.
    """
    confidence, prediction = probabilities.max(dim=1)
    if rule == "global":
        keep = global_threshold_mask(confidence, threshold)
    elif rule == "class_balanced":
        keep = class_balanced_mask(confidence, prediction, fraction, valid)
    else:
        raise ValueError(f"unknown confidence rule '{rule}' (known: global, class_balanced)")
    if valid is not None:
        keep &= valid
    if agree_with is not None:
        keep &= prediction == agree_with
    return torch.where(keep, prediction, torch.full_like(prediction, IGNORE_INDEX))
