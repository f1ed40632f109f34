"""The label-free estimate (analysis/label_free.py): parts by hand, and models whose order is known by
construction (the right colours, two classes swapped, a constant mask, a blurred input) scored in that order."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stpl.analysis.label_free import (
    AgreementMatrix,
    LabelFreeScores,
    PairPredictions,
    estimate_from_parts,
    estimate_model,
    reference_classes,
    soft_neighbourhood_density,
    temporal_estimate,
)
from stpl.data.pairs import PairDataset, denormalize
from stpl.models.segmenter import SegmenterOutput
from stpl.models.warp import warp

PALETTE = torch.tensor([[200.0, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30], [30, 200, 200]])


class ColourModel(nn.Module):
    """Reads each pixel's class off its colour (nearest palette entry): on `moving_squares` it is right
    everywhere. `swap`: classes 0 and 1 exchanged; `constant`: class 0 everywhere; `blur`: a box blur of this
    size over the input first."""

    def __init__(self, swap: bool = False, constant: bool = False, blur: int = 0):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so that the device can be read off the model
        palette = PALETTE.clone()
        if swap:
            palette[[0, 1]] = palette[[1, 0]]
        self.register_buffer("palette", palette)
        self.constant, self.blur = constant, blur

    def frame_logits(self, images: torch.Tensor) -> torch.Tensor:
        colours = denormalize(images)
        if self.blur:
            colours = F.avg_pool2d(colours, self.blur, stride=1, padding=self.blur // 2, count_include_pad=False)
        distance = ((colours[:, None] - self.palette[None, :, :, None, None]) ** 2).sum(dim=2)
        logits = -distance / 1000.0
        if self.constant:
            logits = torch.zeros_like(logits)
            logits[:, 0] = 10.0
        return logits

    def forward(self, current, previous, flow):
        logits = self.frame_logits(current)
        warped, valid = warp(self.frame_logits(previous), flow)
        warped = torch.where(valid[:, None], warped, logits)
        features = logits[:, :1]
        return SegmenterOutput(logits, logits, warped, valid, features, features)


def moving_squares(frames: int = 5, height: int = 37, width: int = 53) -> PairDataset:
    """Squares of classes 1..4 on a background of class 0, moving 2 pixels right per frame; backward flow -2 in x
    (exact: the squares stay inside the frame). Labels withheld."""
    images = np.zeros((frames, height, width, 3), np.uint8)
    for t in range(frames):
        images[t] = PALETTE[0].numpy()
        for k, (y, x, size) in enumerate([(3, 3, 9), (20, 6, 12), (5, 25, 7), (22, 30, 10)], start=1):
            images[t, y : y + size, x + 2 * t : x + 2 * t + size] = PALETTE[k].numpy()
    pairs = np.array([[t, t - 1] for t in range(1, frames)])
    flows = np.zeros((len(pairs), height, width, 2), np.float32)
    flows[..., 0] = -2.0
    names = [f"f{t}" for t in range(frames)]
    return PairDataset(images, pairs, flows, None, [f"c{k}" for k in range(5)], names)


def estimate_of(model: nn.Module, reference: nn.Module | None = None) -> dict:
    return estimate_model(model, moving_squares(), batch_size=2, reference=reference)


def test_agreement_matrix_by_hand():
    """A = [0,0,1,1], B = [0,1,1,1]: class 0 tp 1, union 2 -> 1/2; class 1 tp 2, union 3 -> 2/3; class 2 is in
    neither prediction, so over classes [0, 1, 2] it counts 0: (1/2 + 2/3 + 0) / 3. Pixel agreement 3/4."""
    matrix = AgreementMatrix(3)
    matrix.add(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]))
    assert matrix.mean_iou([0, 1]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert matrix.mean_iou([0, 1, 2]) == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert matrix.pixel_agreement() == pytest.approx(3 / 4)
    assert matrix.kept_identity([0, 1]) == 1.0
    assert matrix.mean_iou([]) == 0.0


def test_kept_identity_sees_two_swapped_classes():
    """B is A with classes 0 and 1 exchanged and class 2 alike: classes 0 and 1 lose their identity."""
    first = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    second = torch.tensor([1, 1, 1, 0, 0, 2, 2])
    matrix = AgreementMatrix(3)
    matrix.add(first, second)
    assert matrix.kept_identity([0, 1, 2]) == pytest.approx(1 / 3)


def test_kept_identity_allows_a_class_to_grow():
    """B relabels half of A's class 1 as class 0 (class 0 grew): class 1 of B still overlaps A's class 1 best."""
    first = torch.tensor([0, 0, 1, 1, 1, 1])
    second = torch.tensor([0, 0, 0, 0, 1, 1])
    matrix = AgreementMatrix(2)
    matrix.add(first, second)
    assert matrix.kept_identity([0, 1]) == 1.0


def test_keep_mask_leaves_out_pixels():
    matrix = AgreementMatrix(2)
    matrix.add(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), keep=torch.tensor([True, False, True]))
    assert matrix.pixel_agreement() == 1.0


def test_reference_classes_need_a_minimum_share():
    assert reference_classes(torch.tensor([900.0, 99.0, 1.0, 0.0]), min_share=0.01) == [0, 1]
    assert reference_classes(torch.zeros(3)) == []


def test_snd_by_hand():
    """Three samples: two identical one-hot vectors and an orthogonal one, temperature 1. Sample 0's neighbours
    have similarities (1, 0) -> softmax (e/(e+1), 1/(e+1)); sample 2's (0, 0) -> (1/2, 1/2), entropy log 2.
    SND = mean entropy / log 2."""
    samples = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p = math.e / (math.e + 1)
    near = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    expected = (2 * near + math.log(2)) / 3 / math.log(2)
    assert soft_neighbourhood_density(samples, temperature=1.0) == pytest.approx(expected, rel=1e-9)
    assert math.isnan(soft_neighbourhood_density(samples[:2]))


def test_a_constant_mask_is_consistent_but_never_scores_well():
    """A constant mask agrees with itself in time and under augmentation, pixel for pixel; over the reference's
    five classes it keeps one: 1/5 of a perfect score at most."""
    right, constant = ColourModel(), ColourModel(constant=True)
    scored = estimate_of(constant, reference=right)
    assert scored["parts"]["temporal_pixels"] == 1.0 and scored["parts"]["augmentation_pixels"] == 1.0
    assert scored["parts"]["temporal_miou"] == pytest.approx(1 / 5)
    assert scored["parts"]["class_coverage"] == pytest.approx(1 / 5)
    assert scored["estimate"] <= 20.0 + 1e-9
    assert estimate_of(constant)["estimate"] <= 20.0 + 1e-9  # without a reference: every class counts


def test_models_known_by_construction_are_ordered():
    right = ColourModel()
    swapped = estimate_of(ColourModel(swap=True), reference=right)
    scores = {
        "right": estimate_of(right, reference=right)["estimate"],
        "swapped": swapped["estimate"],
        "blurred": estimate_of(ColourModel(blur=9), reference=right)["estimate"],
        "constant": estimate_of(ColourModel(constant=True), reference=right)["estimate"],
    }
    assert scores["right"] > 95.0  # exact flow, exact colours: only the resize blurs a few edge pixels
    assert scores["right"] > scores["blurred"] > scores["constant"]
    # as consistent as the right model, but two of five classes lose their identity: 3/5 of its score
    assert swapped["parts"]["class_identity"] == pytest.approx(3 / 5)
    assert scores["swapped"] < 0.61 * scores["right"]
    assert scores["swapped"] > scores["constant"]


def test_the_estimate_does_not_depend_on_the_batch_size():
    right, blurred = ColourModel(), ColourModel(blur=5)
    one = estimate_model(blurred, moving_squares(), batch_size=1, reference=right)
    three = estimate_model(blurred, moving_squares(), batch_size=3, reference=right)
    assert one["estimate"] == pytest.approx(three["estimate"], abs=1e-9)
    assert one["counts"] == three["counts"]


def test_the_estimate_by_hand():
    parts = {"temporal_miou": 0.8, "augmentation_miou": 0.6, "class_identity": 0.5}
    assert estimate_from_parts(parts) == pytest.approx(100 * 0.7 * 0.5)
    assert temporal_estimate(parts) == pytest.approx(100 * 0.8 * 0.5)


def test_scores_of_predictions_by_hand():
    """One pair, 2 classes, 1x2 pixels: frame t says (0, 1), the warped earlier frame (0, 0) with both pixels
    valid, one augmented copy (0, 1): temporal IoU class 0 = 1/2, class 1 = 0 (no overlap) -> 1/4; augmentation 1."""
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 2.0]]]])
    earlier = torch.tensor([[[[2.0, 2.0]], [[0.0, 0.0]]]])
    scores = LabelFreeScores(2)
    scores.add(PairPredictions(logits, logits, earlier, torch.ones(1, 1, 2, dtype=torch.bool), [logits, logits]))
    parts = scores.result()["parts"]
    assert parts["temporal_miou"] == pytest.approx(1 / 4)
    assert parts["augmentation_miou"] == 1.0 and parts["class_identity"] == 1.0
    assert parts["source_miou"] is None
