"""Pixel-level contrastive loss (pixel-wise SimCLR) over pseudo-labelled embeddings, and its anchor sampler.

For an anchor q with positives P_q (same pseudo-class, q excluded) and negatives N_q (other classes), temperature τ:

    seed:     L_q = -1/|P_q| Σ_{p∈P_q} [ q·p/τ - log Σ_{n∈N_q} exp(q·n/τ) ]
    infonce:  L_q = -1/|P_q| Σ_{p∈P_q} [ q·p/τ - log( exp(q·p/τ) + Σ_{n∈N_q} exp(q·n/τ) ) ]

averaged over anchors with at least one positive and one negative. "seed" is STPL's form (the positive is not in
the denominator); "infonce" is the usual variant.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stpl.constants import IGNORE_INDEX


def pixel_contrastive_loss(
    anchors: Tensor,
    anchor_labels: Tensor,
    keys: Tensor | None = None,
    key_labels: Tensor | None = None,
    temperature: float = 0.1,
    form: str = "seed",
    anchor_key_identity: Tensor | None = None,
) -> Tensor:
    """anchors [N,D] and keys [M,D] (unit-norm) with integer labels [N], [M].

    Without keys, the anchors are their own keys and each anchor is excluded from its own positives. With keys,
    `anchor_key_identity` [N,M] bool marks the key entries that are the anchor itself (none when omitted).
    Returns a scalar; zero (with a graph) when no anchor has both a positive and a negative.
    """
    if form not in ("seed", "infonce"):
        raise ValueError(f"unknown contrastive loss form '{form}' (known: seed, infonce)")
    # Similarities / τ overflow half precision easily: the loss is computed in float32, outside any autocast.
    with torch.autocast(anchors.device.type, enabled=False):
        return _contrastive_loss_float32(
            anchors.float(), anchor_labels, None if keys is None else keys.float(), key_labels, temperature, form,
            anchor_key_identity,
        )  # fmt: skip


def _contrastive_loss_float32(
    anchors: Tensor,
    anchor_labels: Tensor,
    keys: Tensor | None,
    key_labels: Tensor | None,
    temperature: float,
    form: str,
    anchor_key_identity: Tensor | None,
) -> Tensor:
    if keys is None:
        keys, key_labels = anchors, anchor_labels
        anchor_key_identity = torch.eye(len(anchors), dtype=torch.bool, device=anchors.device)
    elif key_labels is None:
        raise ValueError("keys were given without key_labels")
    similarity = anchors @ keys.t() / temperature  # [N,M]
    same = anchor_labels[:, None] == key_labels[None, :]
    if anchor_key_identity is None:
        anchor_key_identity = torch.zeros_like(same)
    positive = same & ~anchor_key_identity
    negative = ~same
    usable = positive.any(dim=1) & negative.any(dim=1)
    if not bool(usable.any()):
        return similarity.sum() * 0.0
    similarity, positive, negative = similarity[usable], positive[usable], negative[usable]
    log_negatives = torch.logsumexp(similarity.masked_fill(~negative, float("-inf")), dim=1, keepdim=True)
    if form == "seed":
        log_ratio = similarity - log_negatives
    else:
        log_ratio = similarity - torch.logaddexp(similarity, log_negatives)
    per_anchor = -(log_ratio * positive).sum(dim=1) / positive.sum(dim=1)
    return per_anchor.mean()


def sample_per_class(labels: Tensor, per_class: int, generator: torch.Generator | None = None) -> Tensor:
    """Flat indices of up to `per_class` random pixels of each label value (IGNORE_INDEX skipped)."""
    flat = labels.reshape(-1)
    chosen = []
    for value in torch.unique(flat):
        if int(value) == IGNORE_INDEX:
            continue
        members = torch.nonzero(flat == value, as_tuple=False).squeeze(1)
        if members.numel() > per_class:
            pick = torch.randperm(members.numel(), generator=generator, device="cpu")[:per_class]
            members = members[pick.to(members.device)]
        chosen.append(members)
    if not chosen:
        return torch.zeros(0, dtype=torch.long, device=labels.device)
    return torch.cat(chosen)
