"""DA-VSN source-free (Guan et al., ICCV 2021, "Domain Adaptive Video Segmentation via Temporal Consistency
Regularization").

Original (ACCEL DeepLab-v2): source supervision plus two temporal consistency regularisers (TCR).
- Cross-domain TCR: discriminators on [prediction_t ; prediction_{t-k}] (and a spatial twin) trained adversarially
  between source and target video. Needs source data.
- Intra-domain TCR (ITCR): the earlier frame's per-frame prediction is propagated to frame t by optical flow;
  where it lies inside the frame and its entropy is lower than that of frame t's own per-frame prediction, frame
  t's probabilities are pulled towards it by an L1 loss:
      L_itcr = mean_{b,k,h,w}( M · |p_t - W(p_{t-k})| ),  M = valid · [H(W(p_{t-k})) < H(p_t)]
  (the propagated prediction without gradient), weight λ_u = 0.001 against a source CE of weight 1.

Source-free (DA-VSN*): the source loss and the cross-domain (adversarial) TCR are dropped; ITCR is kept as above
on our model: p_t = softmax of the current-frame logits (with gradient), W(p_{t-k}) = softmax of the earlier
frame's logits warped to t (bilinear on logits, the release splats probabilities to the nearest pixel), at feature
resolution, as in the release. BN follows adapt.norm.
Hyper-parameters (davsn.*): λ_itcr = 1.0. The release's 0.001 only balanced ITCR against the source term; alone,
λ just rescales the shared learning rate, and 0.001 would leave the model where it started. The release also
clips gradients to norm 1, which the shared loop does not do.
"""

from __future__ import annotations

from torch import Tensor

from stpl.adapt.base import AdaptationMethod
from stpl.config import AdaptConfig
from stpl.data.pairs import PairBatch
from stpl.losses.entropy import entropy_map
from stpl.models.segmenter import SegmenterOutput, VideoSegmenter


def intra_domain_consistency(output: SegmenterOutput) -> tuple[Tensor, Tensor]:
    """ITCR loss and the mask [B,h,w] of pixels where the propagated earlier prediction is the more certain."""
    current = output.frame_logits
    propagated = output.warped_logits.detach()
    mask = output.valid & (entropy_map(propagated) < entropy_map(current.detach()))
    difference = (current.softmax(dim=1) - propagated.softmax(dim=1)).abs()
    return (mask[:, None] * difference).mean(), mask


class DAVSN(AdaptationMethod):
    name = "davsn"

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        super().__init__(model, config)

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        output = self.model(batch.current, batch.previous, batch.flow)
        loss, mask = intra_domain_consistency(output)
        return {"loss_itcr": self.config.davsn.lambda_itcr * loss, "guided_fraction": mask.float().mean()}
