"""HCL: historical contrastive learning (Huang et al., NeurIPS 2021), source-free by design.

Original: the source hypothesis is kept through *historical* models (earlier states of the adapted model; the
released segmentation code keeps a momentum copy, m = 0.996). Two terms:
- HCID, historical contrastive instance discrimination: a query q (current model's embedding of a sample) is
  pulled to its key k+ (the historical model's embedding of the same sample) and pushed from the other keys,
  each key weighted by a reliability r (the historical prediction's certainty):
      L_HisNCE = -log( r+ · exp(q·k+/τ) / Σ_i r_i · exp(q·k_i/τ) ),  τ = 0.07
- HCCD, historical contrastive category discrimination: pseudo-labels ŷ, each pixel's cross-entropy re-weighted
  by the consistency of the current and historical predictions (measured as exp(-KL) in the release):
      L_HisST = mean( exp(-KL(p_hist ‖ p_cur)) · CE(p_cur, ŷ) ),  ŷ = argmax p_cur.
The release weighs the instance term 0.5 against the category term 1.0 and takes r = clamp(1.1 - H/log K, 0.9, 1.1)
(H the entropy of the historical prediction).

Here: pixels are the instances. hcl.pixels random feature-map pixels per batch give queries (L2-normalised encoder
features f_t of the student) and keys (the historical model's f_t at the same pixels); HCCD uses the fused
prediction at image resolution. The historical model is an EMA of the student (hcl.momentum, in eval mode), updated
after every step. We follow the paper's description where the release differs: the release contrasts with
pseudo-class positives (we: instance positives) and weights offline source pseudo-labels by the agreement of its
momentum and source models (we: current pseudo-labels, agreement of current and historical models).
Hyper-parameters (hcl.*): momentum 0.996, τ = 0.07, λ_instance = 0.5, λ_category = 1.0 (authors' release);
256 sampled pixels (ours: the pixel-level version needs a sample; cost grows with its square).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stpl.adapt.base import AdaptationMethod
from stpl.adapt.shared import (
    generator_state,
    load_generator_state,
    load_prefixed_state,
    prefixed_state,
)
from stpl.adapt.teachers import Teacher, statistics_source
from stpl.config import AdaptConfig
from stpl.data.pairs import PairBatch, photometric_augment
from stpl.losses.entropy import entropy_map
from stpl.models.segmenter import VideoSegmenter, upsample


def historical_nce(queries: Tensor, keys: Tensor, reliability: Tensor, temperature: float) -> Tensor:
    """queries, keys [N,D] unit-norm with key i the positive of query i; reliability [N] > 0 weights each key."""
    # -log(r_i e^{s_ii} / Σ_j r_j e^{s_ij}) is cross-entropy over the logits s_ij + log r_j with target i.
    logits = queries @ keys.t() / temperature + reliability.log()[None, :]
    return F.cross_entropy(logits, torch.arange(len(queries), device=queries.device))


def agreement_weights(current_logits: Tensor, historical_logits: Tensor) -> Tensor:
    """exp(-KL(p_hist ‖ p_cur)) per pixel [B,H,W]: 1 where both models agree, towards 0 where they diverge."""
    log_current = current_logits.log_softmax(dim=1)
    log_past = historical_logits.log_softmax(dim=1)
    kl = (log_past.exp() * (log_past - log_current)).sum(dim=1)
    return torch.exp(-kl)


class HCL(AdaptationMethod):
    name = "hcl"

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        super().__init__(model, config)
        self.options = config.hcl
        self.historical = Teacher("ema", model, self.options.momentum, statistics_of=statistics_source(model, config))
        self.generator = torch.Generator().manual_seed(seed)

    def instance_loss(self, current: Tensor, past: Tensor, past_logits: Tensor) -> Tensor:
        """HisNCE over randomly sampled pixels of the feature maps [B,C,h,w]."""
        channels = current.shape[1]
        flat_current = current.permute(0, 2, 3, 1).reshape(-1, channels)
        count = min(self.options.pixels, len(flat_current))
        chosen = torch.randperm(len(flat_current), generator=self.generator)[:count].to(current.device)
        queries = F.normalize(flat_current[chosen], dim=1)
        keys = F.normalize(past.permute(0, 2, 3, 1).reshape(-1, channels)[chosen], dim=1)
        certainty = 1.0 - entropy_map(past_logits, normalized=True).reshape(-1)[chosen]
        reliability = (certainty + 0.1).clamp(0.9, 1.1)
        return historical_nce(queries, keys, reliability, self.options.temperature)

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        historical = self.historical.predict(batch)
        if self.config.student_augmentation > 0:
            batch = photometric_augment(batch, self.generator, self.config.student_augmentation)
        student = self.model(batch.current, batch.previous, batch.flow)
        size = batch.current.shape[-2:]
        logits = upsample(student.logits, size)
        weights = agreement_weights(logits.detach(), upsample(historical.logits, size))
        labels = logits.detach().argmax(dim=1)
        category = (weights * F.cross_entropy(logits, labels, reduction="none")).mean()
        instance = self.instance_loss(student.features, historical.features, historical.logits)
        return {
            "loss_category": self.options.lambda_category * category,
            "loss_instance": self.options.lambda_instance * instance,
            "agreement": weights.mean(),
        }

    def after_step(self) -> None:
        self.historical.update(self.model)

    def extra_state(self) -> dict[str, Tensor]:
        return {**prefixed_state("historical", self.historical.model), **generator_state(self.generator)}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        load_prefixed_state(state, "historical", self.historical.model)
        load_generator_state(state, self.generator)
