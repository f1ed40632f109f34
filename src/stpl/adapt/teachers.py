"""Teachers that produce pseudo-labels: a frozen copy, an exponential moving average, or the model itself."""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import Tensor, nn

from stpl.adapt.norm import batch_norms
from stpl.config import AdaptConfig
from stpl.data.pairs import PairBatch
from stpl.models.segmenter import SegmenterOutput, predict_sharing_frames
from stpl.models.warp import warp, warp_error

TEACHERS = ("source", "ema", "current")


@dataclasses.dataclass
class LaterLook:
    """The teacher's prediction of frame t+k warped to frame t, and where it may count."""

    logits: Tensor  # [B,K,h,w]
    valid: Tensor  # [B,h,w] bool: lands inside frame t+k, the pair has a later frame, passes the warp check


class Teacher:
    """`model` is what predicts pseudo-labels; `update(student)` follows the student (EMA only).

    `statistics_of`: a model whose batch-norm statistics the teacher predicts with (copied before each prediction),
    for when the student's statistics follow the target (adapt.norm=update, and every online run): a frozen or
    slowly averaged copy would otherwise keep normalising target frames with the statistics it started from (the
    source's, online), which no re-estimation replaced. CoTTA's original normalises its teacher and anchor with the
    current batch's statistics for the same reason.
    """

    def __init__(
        self,
        kind: str,
        student: nn.Module,
        ema_momentum: float = 0.99,
        flip_average: bool = False,
        statistics_of: nn.Module | None = None,
    ):
        if kind not in TEACHERS:
            raise ValueError(f"unknown teacher '{kind}' (known: {', '.join(TEACHERS)})")
        self.kind = kind
        self.ema_momentum = ema_momentum
        self.flip_average = flip_average  # also predict the mirrored pair and average the two predictions
        self.statistics_of = statistics_of
        if kind == "current":
            self.model = student
        else:
            # A frozen copy of the starting point (after any normalisation re-estimation), always in eval mode.
            self.model = copy.deepcopy(student)
            self.model.eval()
            self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        if self.kind != "ema":
            return
        # In place, parameters and buffers alike, so BN statistics of an updating student are followed too.
        teacher_state = self.model.state_dict()
        for name, value in student.state_dict().items():
            target = teacher_state[name]
            if target.dtype.is_floating_point:
                target.mul_(self.ema_momentum).add_(value.detach(), alpha=1.0 - self.ema_momentum)
            else:
                target.copy_(value)

    @torch.no_grad()
    def predict(self, batch: PairBatch) -> SegmenterOutput:
        """The teacher's prediction in eval mode (dropout off, stored BN statistics); module modes restored."""
        if self.statistics_of is not None and self.statistics_of is not self.model:
            copy_norm_statistics(self.statistics_of, self.model)
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        output = predict_sharing_frames(self.model, batch.current, batch.previous, batch.flow)
        if self.flip_average:
            output = average_with_mirror(output, predict_sharing_frames(self.model, *mirror_pair(batch)))
        for module, training in modes:
            module.training = training
        return output

    @torch.no_grad()
    def look_later(self, batch: PairBatch, error_limit: float = 0.0) -> LaterLook | None:
        """The prediction of the following pair (t+k, t) warped back to frame t by the forward flow; None when the
        batch carries no look ahead. `error_limit` > 0 drops pixels whose warped frame t+k disagrees with frame t
        (`standardised_warp_error`): occlusions and wrong flow."""
        if batch.later is None or batch.forward_flow is None or batch.has_later is None:
            return None
        ahead = self.predict(batch.later)
        logits, valid = warp(ahead.logits, batch.forward_flow)
        valid = valid & batch.has_later.view(-1, 1, 1)
        if error_limit > 0:
            error = standardised_warp_error(batch.current, batch.later.current, batch.forward_flow, valid.shape[-2:])
            valid = valid & (error <= error_limit)
        return LaterLook(logits, valid)


def statistics_source(student: nn.Module, config: AdaptConfig) -> nn.Module | None:
    """The model a teacher takes its normalisation statistics from: the student's when they follow the target
    (adapt.norm=update), else None (its own, fixed at the start)."""
    return student if config.norm == "update" else None


@torch.no_grad()
def copy_norm_statistics(source: nn.Module, target: nn.Module) -> None:
    """The batch-norm running statistics of `source` into the same layers of `target` (same architecture)."""
    for norm, copy_ in zip(batch_norms(source), batch_norms(target), strict=True):
        if norm.running_mean is not None and copy_.running_mean is not None:
            copy_.running_mean.copy_(norm.running_mean)
            copy_.running_var.copy_(norm.running_var)


def standardised_warp_error(current: Tensor, other: Tensor, flow: Tensor, size: tuple[int, int]) -> Tensor:
    """`warp_error` between images each standardised per channel first, so that a change of brightness or
    contrast of a whole frame (a flicker) is no error; only structure that does not line up is."""

    def standardise(images: Tensor) -> Tensor:
        mean = images.mean(dim=(2, 3), keepdim=True)
        return (images - mean) / images.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)

    return warp_error(standardise(current), standardise(other), flow, size)


def mirror_pair(batch: PairBatch) -> tuple[Tensor, Tensor, Tensor]:
    """Frame t, frame t-k and the flow mirrored left-right (the flow's x component changes sign)."""
    flow = batch.flow.flip(-1) * batch.flow.new_tensor([-1.0, 1.0]).view(1, 2, 1, 1)
    return batch.current.flip(-1), batch.previous.flip(-1), flow


def average_with_mirror(output: SegmenterOutput, mirrored: SegmenterOutput) -> SegmenterOutput:
    """The mean of the two predictions' probabilities (as log-probabilities); a pixel is valid if valid in both."""

    def mean(a: Tensor, b: Tensor) -> Tensor:
        return (0.5 * (a.softmax(dim=1) + b.flip(-1).softmax(dim=1))).log()

    return dataclasses.replace(
        output,
        logits=mean(output.logits, mirrored.logits),
        warped_logits=mean(output.warped_logits, mirrored.warped_logits),
        valid=output.valid & mirrored.valid.flip(-1),
    )
