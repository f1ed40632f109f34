"""Prediction entropy, shared by the methods that minimise or read it (TENT, UR, HCL, DA-VSN; FDA's target term).

H(p) = -sum_k p_k log p_k        per pixel, p = softmax(logits) over the class dimension, in nats
H / log K                        `normalized`: 0 for a one-hot prediction, 1 for a uniform one
(H_n^2 + 1e-8) ** eta            `charbonnier_entropy`: FDA's penalty on the normalised entropy, which for
                                 eta > 0.5 weighs confident pixels less than the plain entropy does
"""

from __future__ import annotations

import math

from torch import Tensor


def entropy_map(logits: Tensor, normalized: bool = False) -> Tensor:
    """Shannon entropy (nats) per pixel of softmax(logits) [B,K,H,W] -> [B,H,W]; `normalized` divides by log K."""
    log_p = logits.log_softmax(dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1)
    return entropy / math.log(logits.shape[1]) if normalized else entropy


def charbonnier_entropy(logits: Tensor, eta: float = 2.0) -> Tensor:
    """Mean over pixels of (H_n(p)^2 + 1e-8) ** eta, H_n the entropy normalised by log K (FDA's target loss; the
    authors use eta = 2)."""
    return (entropy_map(logits, normalized=True) ** 2 + 1e-8).pow(eta).mean()
