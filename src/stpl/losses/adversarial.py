"""The losses of output-space adversarial adaptation, shared by the UDA baselines that align predictions (DA-VSN,
VAT-VST).

A discriminator D maps a prediction to logits of "target" (label 1) against "source" (label 0), per patch. With
BCE(z, y) = -y log s(z) - (1 - y) log(1 - s(z)), s the logistic function, averaged over patches:

    discriminator_loss = 1/2 [ BCE(D(p_s), 0) + BCE(D(p_t), 1) ]    trains D (predictions without gradient)
    fooling_loss       = BCE(D(p_t), 0)                              trains the segmenter, D held fixed: target
                                                                     predictions that D takes for source ones

At z = 0 each term is log 2 (D undecided); a D that is sure and right (z_s -> -inf, z_t -> +inf) drives its loss
to 0 and the fooling loss up as |z_t|.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SOURCE_LABEL = 0.0
TARGET_LABEL = 1.0


def domain_bce(logits: Tensor, label: float) -> Tensor:
    """Mean binary cross-entropy of every patch logit against one domain label."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), label))


def discriminator_loss(source_logits: Tensor, target_logits: Tensor) -> Tensor:
    return 0.5 * (domain_bce(source_logits, SOURCE_LABEL) + domain_bce(target_logits, TARGET_LABEL))


def fooling_loss(target_logits: Tensor) -> Tensor:
    return domain_bce(target_logits, SOURCE_LABEL)
