"""Confidence-filtered pseudo-labels: argmax of a teacher's probabilities, unconfident and invalid pixels ignored."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from stpl.constants import IGNORE_INDEX


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
    class_thresholds: Tensor | None = None,
) -> Tensor:
    """probabilities [B,K,H,W] -> labels [B,H,W] long with IGNORE_INDEX where not kept.

    valid [B,H,W]: pixels to consider at all (e.g. flow inside the earlier frame); agree_with [B,H,W]: labels
    (e.g. the warped prediction of frame t-k) that a kept pixel must match; class_thresholds [K]: the "class_median"
    rule's per-class confidence thresholds (see `class_median_thresholds`).
    """
    confidence, prediction = probabilities.max(dim=1)
    if rule == "global":
        keep = global_threshold_mask(confidence, threshold)
    elif rule == "class_median":
        if class_thresholds is None:
            raise ValueError("the class_median rule needs class_thresholds (computed before adaptation)")
        keep = confidence >= class_thresholds.to(confidence.device)[prediction]
    elif rule == "class_balanced":
        keep = class_balanced_mask(confidence, prediction, fraction, valid)
    else:
        raise ValueError(f"unknown confidence rule '{rule}' (known: global, class_balanced, class_median)")
    if valid is not None:
        keep &= valid
    if agree_with is not None:
        keep &= prediction == agree_with
    return torch.where(keep, prediction, torch.full_like(prediction, IGNORE_INDEX))


def class_median_thresholds(
    probabilities: Iterable[Tensor], num_classes: int, cap: float, quantile: float = 0.5
) -> Tensor:
    """Per class c: min(cap, median confidence of the pixels predicted as c) over all the given predictions
    ([B,K,H,W] each, e.g. a frozen teacher over the whole adaptation set); `cap` for classes never predicted.
    Another `quantile` q takes the value at position round(q * n) of the n confidences in ascending order instead
    (FDA's rule: q = 0.66, cap 0.9).

    Fixed thresholds over the whole set keep the easy half of every class, rare ones included, and do not follow
    each batch's mix of classes (the per-batch class-balanced rule does).
    """
    per_class: list[list[Tensor]] = [[] for _ in range(num_classes)]
    for batch in probabilities:
        confidence, prediction = batch.max(dim=1)
        for value in torch.unique(prediction).tolist():
            per_class[value].append(confidence[prediction == value].float().cpu())
    thresholds = torch.full((num_classes,), cap)
    for value, chunks in enumerate(per_class):
        if chunks:
            values = torch.cat(chunks)
            if quantile == 0.5:
                chosen = values.median()  # the lower median
            else:
                chosen = values.kthvalue(min(len(values), max(1, round(quantile * len(values))))).values
            thresholds[value] = min(cap, float(chosen))
    return thresholds
