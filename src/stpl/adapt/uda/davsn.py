"""DA-VSN with source data (Guan et al., ICCV 2021, "Domain Adaptive Video Segmentation via Temporal Consistency
Regularization").

Original (ACCEL DeepLab-v2, batch 1, SGD 2.5e-4; discriminators of AdvEnt trained by Adam 1e-4): the supervised
source loss plus
- cross-domain temporal consistency: a spatio-temporal discriminator sees the predictions of frames t and t-1 of a
  clip, their logits concatenated and one softmax taken over all 2K channels, and a spatial discriminator sees
  frame t's logits concatenated with themselves, treated alike; the segmenter is trained to make target clips pass
  for source ones (weight 0.001 each);
- intra-domain temporal consistency (ITCR, adapt/davsn.py): where the earlier frame's prediction, propagated to t
  by flow, is more certain than frame t's own, frame t's probabilities are pulled to it by an L1 loss (0.001).
The release also penalises the similarity of the two discriminators' weights; that term is not reproduced.

Here: the source term of adapt/uda/base.py; the discriminators (models/discriminator.py, AdvEnt's) run at the
prediction's own resolution rather than upsampled to the image (16 times cheaper, the same patches of the
scene); the earlier frame's logits are the warped ones our video model computes (aligned to t; the original feeds
them unaligned). Updates as adapt/uda/adversarial.py describes. Weights: adapt.uda.lambda_adversarial and
adapt.uda.davsn_lambda_itcr (0.001, the release's).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stpl.adapt.davsn import intra_domain_consistency
from stpl.adapt.uda.adversarial import AdversarialAlignment
from stpl.adapt.uda.base import SourceSupervised
from stpl.config import AdaptConfig
from stpl.data.pairs import PairBatch
from stpl.models.segmenter import SegmenterOutput, VideoSegmenter


def joint_probabilities(first: Tensor, second: Tensor) -> Tensor:
    """One softmax over the concatenated logits of two predictions [B,K,h,w] each -> [B,2K,h,w] (DA-VSN's input
    to its discriminators: the pair's channels sum to 1 together)."""
    return torch.cat([first, second], dim=1).float().softmax(dim=1)


def discriminator_inputs(output: SegmenterOutput) -> dict[str, Tensor]:
    """What each discriminator sees of a video prediction: "spatial" frame t twice, "temporal" t and t-k."""
    return {
        "spatial": joint_probabilities(output.logits, output.logits),
        "temporal": joint_probabilities(output.logits, output.warped_logits),
    }


class UdaDAVSN(SourceSupervised):
    name = "uda-davsn"

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        super().__init__(model, config)
        channels = 2 * model.num_classes
        device = next(model.parameters()).device
        self.alignment = AdversarialAlignment({"spatial": channels, "temporal": channels}, device, seed)

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        source = self.source_of(batch)
        source_output = self.source_forward(source.current, source.previous, source.flow)
        target_output = self.model(batch.current, batch.previous, batch.flow)
        uda = self.config.uda
        values = {"loss_source": uda.lambda_source * self.source_loss(source_output, source.label)}
        source_maps, target_maps = discriminator_inputs(source_output), discriminator_inputs(target_output)
        for name in ("spatial", "temporal"):
            fooling = self.alignment.fooling(name, source_maps[name], target_maps[name])
            values[f"loss_adversarial_{name}"] = uda.lambda_adversarial * fooling
        itcr, mask = intra_domain_consistency(target_output)
        values["loss_itcr"] = uda.davsn_lambda_itcr * itcr
        values["guided_fraction"] = mask.float().mean()
        values["discriminator_loss"] = self.alignment.last_loss  # of the previous step's update
        return values

    def after_step(self) -> None:
        self.alignment.update()

    def extra_state(self) -> dict[str, Tensor]:
        return self.alignment.extra_state()

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        self.alignment.load_extra_state(state)
