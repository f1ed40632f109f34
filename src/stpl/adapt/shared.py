"""Small pieces the methods share: pseudo-labels of a prediction, masked losses, method state (the entropy lives
in losses/entropy.py).

Kept apart from the methods so each baseline file shows only its own objective.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stpl.adapt.pseudo_labels import class_median_thresholds, make_pseudo_labels
from stpl.adapt.teachers import LaterLook
from stpl.config import AdaptConfig
from stpl.constants import IGNORE_INDEX
from stpl.data.pairs import PairBatch
from stpl.models.segmenter import SegmenterOutput, upsample

CLASS_THRESHOLDS = "class_thresholds"  # extra-state key of the class_median rule's thresholds


def mean_confidence(logits: Tensor) -> Tensor:
    """Mean top-class probability of a prediction [B,K,h,w]: a logged statistic of the teacher, a 0-d tensor left
    on the device (the loop reads it at log steps only)."""
    return logits.detach().float().softmax(dim=1).amax(dim=1).mean()


def nearest_resize(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of [B,h,w] masks or label maps, keeping their dtype (a mask must not be blurred
    into half-valid pixels, nor a label map into classes between two)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None].float(), size=size, mode="nearest")[:, 0].to(maps.dtype)


def prediction_pseudo_labels(
    output: SegmenterOutput,
    size: tuple[int, int],
    config: AdaptConfig,
    class_thresholds: Tensor | None = None,
    later: LaterLook | None = None,
) -> Tensor:
    """Pseudo-labels [B,H,W] from a (teacher) video prediction at `size`: confident, flow-valid pixels only,
    optionally only where the fused prediction of t agrees with the warped prediction of t-k.

    The rule, threshold, class fraction and temporal options are those of `config` (adapt.*).
    temporal_ensemble: the probabilities are the mean of the fused prediction of t and the warped prediction of
    t-k (two looks at the same physical point), so a nuisance that hits one frame only is outvoted.
    later (adapt.teacher_later): the teacher's look at t+k joins the mean, one vote per frame, where it is valid.
    """
    warped = upsample(output.warped_logits.float(), size)  # probabilities and thresholds in float32
    probabilities = upsample(output.logits.float(), size).softmax(dim=1)
    votes = 1.0
    if config.temporal_ensemble:
        probabilities, votes = 0.5 * (probabilities + warped.softmax(dim=1)), 2.0
    if later is not None:
        weight = nearest_resize(later.valid, size).unsqueeze(1).to(probabilities.dtype)
        ahead = upsample(later.logits.float(), size).softmax(dim=1)
        probabilities = (votes * probabilities + weight * ahead) / (votes + weight)
    agree_with = warped.argmax(dim=1) if config.temporal_agreement else None
    return make_pseudo_labels(
        probabilities,
        valid=nearest_resize(output.valid, size),
        rule=config.confidence,
        threshold=config.threshold,
        fraction=config.class_fraction,
        agree_with=agree_with,
        class_thresholds=class_thresholds,
    )


@torch.no_grad()
def teacher_class_thresholds(
    predict: Callable[[PairBatch], SegmenterOutput],
    batches: Iterable[PairBatch],
    num_classes: int,
    cap: float,
    quantile: float = 0.5,
) -> Tensor:
    """The class_median rule's per-class thresholds from the teacher's predictions of every batch, at the image
    size as the pseudo-labels are (read one batch at a time)."""
    probabilities = (upsample(predict(b).logits, b.current.shape[-2:]).softmax(dim=1) for b in batches)
    return class_median_thresholds(probabilities, num_classes, cap, quantile)


def masked_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over labelled pixels; zero (keeping the graph) when every pixel is ignored."""
    if not bool((labels != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


def prefixed_state(prefix: str, module: nn.Module) -> dict[str, Tensor]:
    """A module's state dict under `prefix.` (for Method.extra_state)."""
    return {f"{prefix}.{key}": value for key, value in module.state_dict().items()}


def load_prefixed_state(state: dict[str, Tensor], prefix: str, module: nn.Module) -> None:
    """Inverse of `prefixed_state`; does nothing when the state holds no such entries."""
    own = {key[len(prefix) + 1 :]: value for key, value in state.items() if key.startswith(f"{prefix}.")}
    if own:
        module.load_state_dict(own)


def generator_state(generator: torch.Generator) -> dict[str, Tensor]:
    return {"rng.method": generator.get_state()}


def load_generator_state(state: dict[str, Tensor], generator: torch.Generator) -> None:
    if "rng.method" in state:
        generator.set_state(state["rng.method"])
