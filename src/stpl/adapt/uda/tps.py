"""TPS with source data (Xing et al., ECCV 2022, "Domain Adaptive Video Segmentation via Temporal Pseudo
Supervision").

Original: the supervised source loss (weight 1) beside the target term that TPS* keeps (adapt/tps.py): the
earlier frame's prediction, from clean frames without gradient, warped to frame t by optical flow, supervises by
cross-entropy the prediction of a strongly augmented, rescaled frame t. The release also matches the source
frames' histograms to the target frame's; that step is not reproduced.

Here: exactly TPS*'s target term and options (adapt.tps.*), plus the source term of adapt/uda/base.py, so that
this row and the `tps` row differ by the source data alone.
"""

from __future__ import annotations

from torch import Tensor

from stpl.adapt.tps import TPS
from stpl.adapt.uda.base import SourceSupervised
from stpl.data.pairs import PairBatch


class UdaTPS(SourceSupervised, TPS):
    name = "uda-tps"
    default_source_statistics = "shared"  # held out on camvid-dusk: better than "own" (docs/uda.md)

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        source = self.config.uda.lambda_source * self.supervised_source(batch)  # first: the watch reads the last pass
        return {**super().step(batch, step), "loss_source": source}
