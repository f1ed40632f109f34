"""RDA with source data (Huang et al., ICCV 2021, "RDA: Robust Domain Adaptation via Fourier Adversarial
Attacking").

Original: Fourier adversarial attacking (FAA). An image's spectrum is cut into 32 concentric frequency bands per
colour channel (96 components). The components that carry the semantics (in the release, bands 2-15, which a
reconstruction term keeps unchanged) are left alone; among the others, a learned gate picks the 10 % whose
amplitudes, replaced by those of a reference image (phase kept), raise the task loss, so that the model trains
on images perturbed where it is weakest without their content changing. The attacked images are then trained
on: source images with their labels, target images in a self-training (or consistency) loss.

Here the gate is replaced by its first-order answer, computed per image: the gradient of the loss with respect
to each component's swap weight w (amplitude A + w (A_ref - A), w = 0 the image as it is) predicts how much
swapping it raises the loss; of the components outside adapt.uda.rda_semantic_bands, the adapt.uda.rda_share of
all components with the largest positive gradients are swapped. Source pairs take a target frame's amplitudes
(their weighted cross-entropy is the loss attacked and then learnt); target pairs take a source frame's (the loss
is the cross-entropy on the teacher's pseudo-labels of the clean pair: adapt.teacher, adapt.confidence, as
self-training), weight rda_lambda_target. Both frames of a pair get the same components, from the same
reference. Swaps are made in pixel values (0-255), as FDA's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from stpl.adapt.self_training import SelfTraining
from stpl.adapt.shared import masked_cross_entropy
from stpl.adapt.uda.base import SourceSupervised, resized
from stpl.constants import IGNORE_INDEX
from stpl.data.fourier import frequency_bands, swap_band_amplitudes
from stpl.data.pairs import PairBatch, denormalize, normalize
from stpl.models.segmenter import SegmenterOutput, upsample

PairLoss = Callable[[Tensor, Tensor], Tensor]  # (frame t, frame t-k), normalised -> a loss


def fourier_attack(
    current: Tensor,
    previous: Tensor,
    reference: Tensor,
    loss_of: PairLoss,
    bands: int,
    semantic: tuple[int, int],
    share: float,
) -> tuple[Tensor, Tensor]:
    """The pair with its most harmful non-semantic amplitude components swapped for `reference`'s (all three
    ImageNet-normalised [B,3,H,W]); returns the attacked pair, without gradient. At most round(share * 3 * bands)
    components per image, only those whose swap the gradient says raises the loss."""
    band_map = frequency_bands(*current.shape[-2:], bands, current.device)
    pixels = [denormalize(image) for image in (current, previous, reference)]
    weights = torch.zeros(current.shape[0], current.shape[1], bands, device=current.device, requires_grad=True)

    def attacked(chosen: Tensor) -> tuple[Tensor, Tensor]:
        return (
            normalize(swap_band_amplitudes(pixels[0], pixels[2], band_map, chosen)),
            normalize(swap_band_amplitudes(pixels[1], pixels[2], band_map, chosen)),
        )

    with torch.enable_grad():
        (gradient,) = torch.autograd.grad(loss_of(*attacked(weights)), weights)
    eligible = torch.ones(bands, dtype=torch.bool, device=current.device)
    eligible[semantic[0] : semantic[1] + 1] = False
    score = torch.where(eligible, gradient, torch.full_like(gradient, -torch.inf)).flatten(1)
    count = max(1, round(share * score.shape[1]))
    top = score.topk(count, dim=1)
    chosen = torch.zeros_like(score).scatter(1, top.indices, (top.values > 0).to(score.dtype))
    with torch.no_grad():
        return attacked(chosen.view_as(weights))


class RDA(SourceSupervised, SelfTraining):
    name = "uda-rda"
    default_source_statistics = "shared"  # held out on camvid-dusk: better than "own" (docs/uda.md)

    def attack(self, pair: PairBatch, reference: Tensor, loss_of: PairLoss) -> tuple[Tensor, Tensor]:
        uda = self.config.uda
        semantic = (uda.rda_semantic_bands[0], uda.rda_semantic_bands[1])
        return fourier_attack(pair.current, pair.previous, reference, loss_of, uda.rda_bands, semantic, uda.rda_share)

    def references(self, pool: Tensor, count: int) -> Tensor:
        """`count` frames drawn from `pool` [N,3,H,W] (with replacement), resized to the pool's size."""
        pick = torch.randint(0, pool.shape[0], (count,), generator=self.generator).to(pool.device)
        return pool[pick]

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        source, uda = self.source_of(batch), self.config.uda

        def source_loss(current: Tensor, previous: Tensor) -> Tensor:
            return self.source_loss(self.source_forward(current, previous, source.flow), source.label)

        target_frames = resized(batch.current, source.current.shape[-2:])
        attacked = self.attack(source, self.references(target_frames, source.current.shape[0]), source_loss)
        values = {"loss_source": uda.lambda_source * source_loss(*attacked)}

        size = batch.current.shape[-2:]
        labels = self.pseudo_labels(self.teacher.predict(batch), size, None)

        def target_loss(current: Tensor, previous: Tensor) -> Tensor:
            output: SegmenterOutput = self.model(current, previous, batch.flow)
            return masked_cross_entropy(upsample(output.logits, size), labels)

        source_frames = resized(source.current, size)
        attacked = self.attack(batch, self.references(source_frames, batch.current.shape[0]), target_loss)
        values["loss_pl"] = uda.rda_lambda_target * target_loss(*attacked)
        values["kept_fraction"] = (labels != IGNORE_INDEX).float().mean()
        return values
