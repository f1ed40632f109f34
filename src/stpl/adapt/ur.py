"""UR: uncertainty reduction for model adaptation (Sivaprasad & Fleuret, CVPR 2021), source-free by design.

Original (DeepLab-v2, Cityscapes -> NTHU cities): the source model's classifier is frozen; D auxiliary decoders
(fresh copies of the classifier architecture) each see the encoder features through feature noise (Dropout2d,
p = 0.5 in the released configuration) and are pulled towards the main decoder's prediction; together with
entropy minimisation and self-training this reduces the model's uncertainty on the target:
    L = λ_ce · CE(p, ŷ) + λ_ent · H(p) / log K + λ_unc · Σ_d mean‖softmax(g_d(drop(f))) - sg(p_main)‖²
with ŷ class-balanced (CRST) pseudo-labels of the source model (one round), H the per-pixel entropy normalised by
log K, and the auxiliary decoders trained at 10x the learning rate.

Here: the same three terms on our video model. p is the fused prediction (entropy and CE at image resolution);
the auxiliary decoders read f_t and are matched to the current-frame prediction of the main classifier (the same
input) at feature resolution. The class-score layers (classifier and the logit fusion) stay frozen: with a
trainable last layer the entropy can be cut by scaling the logits. Pseudo-labels: a frozen copy of the starting
model, the top ur.class_fraction of each predicted class's confidences per batch (CRST thresholds are set over the
whole target set). BN follows adapt.norm.
Hyper-parameters (ur.*), all from the authors' released command line and defaults: 4 decoders, dropout 0.5,
λ_ce = 1, λ_ent = 1, λ_unc = 0.1, decoders at 10x lr, class fraction 0.2 (CRST's initial target portion).
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

from stpl.adapt.norm import set_norm_mode
from stpl.adapt.pseudo_labels import make_pseudo_labels
from stpl.adapt.shared import load_prefixed_state, masked_cross_entropy, prefixed_state
from stpl.adapt.teachers import Teacher, statistics_source
from stpl.config import AdaptConfig
from stpl.constants import IGNORE_INDEX
from stpl.data.pairs import PairBatch
from stpl.engine.method import Method, parameter_groups
from stpl.losses.entropy import entropy_map
from stpl.models.segmenter import VideoSegmenter, upsample


def noisy_decoder(classifier: nn.Module, dropout: float) -> nn.Module:
    """Feature dropout followed by a fresh copy of the classifier's architecture (DeepLab's classifier init,
    N(0, 0.01) weights and zero biases, which UR's new decoders get)."""
    decoder = copy.deepcopy(classifier)
    for module in decoder.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif hasattr(module, "reset_parameters"):
            module.reset_parameters()
    decoder.requires_grad_(True)
    return nn.Sequential(nn.Dropout2d(dropout), decoder)


class UR(Method):
    name = "ur"

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        super().__init__(model)
        self.config = config
        self.options = config.ur
        self.source = Teacher("source", model, statistics_of=statistics_source(model, config))
        device = next(model.parameters()).device
        self.decoders = nn.ModuleList(
            noisy_decoder(model.classifier, self.options.dropout) for _ in range(self.options.decoders)
        ).to(device)
        if self.options.freeze_classifier:
            model.classifier.requires_grad_(False)
            model.score_fusion.requires_grad_(False)

    def param_groups(self) -> list[dict[str, Any]]:
        lr = self.config.lr * self.options.decoder_lr_scale
        decoders = {"params": list(self.decoders.parameters()), "lr": lr, "initial_lr": lr}
        return [*parameter_groups(self.model, self.config.lr, self.config.backbone_lr_scale), decoders]

    def train_mode(self) -> None:
        self.model.train()
        set_norm_mode(self.model, self.config.norm)
        self.decoders.train()

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        size = batch.current.shape[-2:]
        source = upsample(self.source.predict(batch).logits, size)
        probabilities = source.softmax(dim=1)
        labels = make_pseudo_labels(probabilities, rule="class_balanced", fraction=self.options.class_fraction)
        student = self.model(batch.current, batch.previous, batch.flow)
        logits = upsample(student.logits, size)
        main = student.frame_logits.detach().softmax(dim=1)
        # Summed over decoders, each a mean over pixels and classes (the released loss).
        consistency = sum(((decoder(student.features).softmax(dim=1) - main) ** 2).mean() for decoder in self.decoders)
        o = self.options
        return {
            "loss_pl": o.lambda_pl * masked_cross_entropy(logits, labels),
            "loss_entropy": o.lambda_entropy * entropy_map(logits, normalized=True).mean(),
            "loss_consistency": o.lambda_consistency * consistency,
            "kept_fraction": (labels != IGNORE_INDEX).float().mean(),
            "teacher_confidence": probabilities.amax(dim=1).mean(),  # the frozen source model's
        }

    def extra_state(self) -> dict[str, Tensor]:
        return {**prefixed_state("teacher", self.source.model), **prefixed_state("ur_decoders", self.decoders)}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        load_prefixed_state(state, "teacher", self.source.model)
        load_prefixed_state(state, "ur_decoders", self.decoders)
