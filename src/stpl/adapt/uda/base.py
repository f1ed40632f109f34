"""What every domain-adaptation baseline that trains with source data shares: the labelled source pairs of the
step (`batch.source`), their supervised loss, and how they pass through normalisation.

The source term is the source model's own loss: cross-entropy of the fused video prediction at the label size,
weighted by the source labels' median-frequency class weights (train.class_weight_power, set by the workflow).
Normalisation: the target frames use the statistics `adapt.norm` says (re-estimated on the target video by
default). With adapt.uda.source_statistics "own" the source pairs are normalised by their own batch statistics,
as when the source model was trained, and never change the stored ones (domain-specific normalisation, so that
the model scored on the target keeps target statistics); "shared" normalises them with the stored statistics the
target frames use, as the originals' frozen batch-norm treats both domains alike. With "own", a target term can
drive the target predictions into collapse while the source term, under other statistics, stays satisfied
(uda-tps on the synthetic benchmark). Neither fits every method, so each says which it uses by default
(`default_source_statistics`), as held-out frames of camvid-dusk's adaptation set chose (docs/uda.md): "shared"
for the methods that self-train on perturbed target views (PixMatch, RDA, TPS), "own" for the others.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from stpl.adapt.base import AdaptationMethod
from stpl.adapt.norm import batch_norms, batch_statistics
from stpl.constants import IGNORE_INDEX
from stpl.data.pairs import PairBatch
from stpl.errors import StplError
from stpl.models.segmenter import SegmenterOutput, upsample


def resized(images: Tensor, size: tuple[int, ...] | torch.Size) -> Tensor:
    """Frames of one domain at the other's size (bilinear), e.g. a target frame whose style a source frame takes."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False)


class SourceSupervised(AdaptationMethod):
    """Base of the UDA baselines: `source_of(batch)`, `source_forward`, `source_loss`."""

    uses_source = True
    # How the source pairs are normalised when adapt.uda.source_statistics is "default" (see the module docstring)
    default_source_statistics: ClassVar[Literal["own", "shared"]] = "own"

    class_weights: Tensor | None = None  # [K], from the source labels (workflows.source_pairs)

    def set_source_class_weights(self, weights: Tensor) -> None:
        self.class_weights = weights

    @staticmethod
    def source_of(batch: PairBatch) -> PairBatch:
        if batch.source is None or batch.source.label is None:
            raise StplError("this method trains with labelled source pairs, and the batch carries none")
        return batch.source

    @property
    def source_statistics(self) -> Literal["own", "shared"]:
        """What normalises the source pairs: the configured choice, or this method's default."""
        chosen = self.config.uda.source_statistics
        return self.default_source_statistics if chosen == "default" else chosen

    def source_forward(self, current: Tensor, previous: Tensor, flow: Tensor) -> SegmenterOutput:
        if self.source_statistics == "shared":  # as the target frames: the model's current modes
            return self.model(current, previous, flow)
        with batch_statistics(batch_norms(self.model), update_running=False):
            return self.model(current, previous, flow)

    def source_loss(self, output: SegmenterOutput, labels: Tensor) -> Tensor:
        logits = upsample(output.logits, labels.shape[-2:]).float()
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        if not bool((labels != IGNORE_INDEX).any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits, labels, weight=weight, ignore_index=IGNORE_INDEX)

    def supervised_source(self, batch: PairBatch) -> Tensor:
        """The plain source term of the step: the source pairs as they come, their weighted cross-entropy."""
        source = self.source_of(batch)
        return self.source_loss(self.source_forward(source.current, source.previous, source.flow), source.label)
