import torch

from stpl.adapt.pseudo_labels import make_pseudo_labels

IGNORE = 255


def probabilities(rows):
    """[H][W] lists of per-class probability lists -> [1,K,H,W]."""
    return torch.tensor(rows, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)


# 2x3 map, 2 classes: predicted classes and confidences below. Every confidence is >= 0.05 from every threshold
# and no two tie, so float32 rounding cannot move a pixel across a cut (nor the class-balanced counts, which are
# Python's round() of float64 products such as 3 x 2/3 = 2.0).
PROBS = probabilities(
    [
        [[0.95, 0.05], [0.80, 0.20], [0.60, 0.40]],
        [[0.30, 0.70], [0.08, 0.92], [0.45, 0.55]],
    ]
)


def test_global_threshold():
    labels = make_pseudo_labels(PROBS, rule="global", threshold=0.75)
    assert labels.tolist() == [[[0, 0, IGNORE], [IGNORE, 1, IGNORE]]]


def test_class_balanced_keeps_top_fraction_of_each_class():
    # class 0 confidences 0.95, 0.80, 0.60 -> top 2/3 keep 0.95, 0.80; class 1: 0.70, 0.92, 0.55 -> 0.92, 0.70
    labels = make_pseudo_labels(PROBS, rule="class_balanced", fraction=2 / 3)
    assert labels.tolist() == [[[0, 0, IGNORE], [1, 1, IGNORE]]]
    # a rare class still keeps its best pixel even with a small fraction
    labels = make_pseudo_labels(PROBS, rule="class_balanced", fraction=0.1)
    assert labels.tolist() == [[[0, IGNORE, IGNORE], [IGNORE, 1, IGNORE]]]


def test_invalid_pixels_and_temporal_disagreement_are_ignored():
    valid = torch.tensor([[[True, False, True], [True, True, True]]])
    agree_with = torch.tensor([[[0, 0, 0], [1, 0, 1]]])
    labels = make_pseudo_labels(PROBS, valid=valid, rule="global", threshold=0.5, agree_with=agree_with)
    # (0,1) invalid; (1,1) predicted 1 but the earlier frame says 0; (1,2) kept at 0.55 >= 0.5
    assert labels.tolist() == [[[0, IGNORE, 0], [1, IGNORE, 1]]]


def test_temporal_ensemble_lets_the_earlier_frame_outvote_a_one_frame_error():
    import dataclasses

    from stpl.adapt.shared import prediction_pseudo_labels
    from stpl.config import AdaptConfig
    from stpl.models.segmenter import SegmenterOutput

    # Pixel 0: frame t says class 1 weakly (0.55), the warped frame t-k says class 0 strongly (0.9) -> 0 wins.
    # Pixel 1: both say class 1.
    current = torch.log(torch.tensor([[0.45, 0.55], [0.2, 0.8]])).T.reshape(1, 2, 1, 2)
    warped = torch.log(torch.tensor([[0.9, 0.1], [0.3, 0.7]])).T.reshape(1, 2, 1, 2)
    valid = torch.ones(1, 1, 2, dtype=torch.bool)
    output = SegmenterOutput(current, current, warped, valid, current, current)
    rule = AdaptConfig(confidence="global", threshold=0.5)
    alone = prediction_pseudo_labels(output, (1, 2), rule)
    together = prediction_pseudo_labels(output, (1, 2), dataclasses.replace(rule, temporal_ensemble=True))
    assert alone.tolist() == [[[1, 1]]]
    assert together.tolist() == [[[0, 1]]]  # (0.45 + 0.9) / 2 = 0.675 for class 0; (0.8 + 0.7) / 2 = 0.75


def test_class_median_thresholds_by_hand():
    from stpl.adapt.pseudo_labels import class_median_thresholds

    # two "batches" of 1x3 pixels, 3 classes; class 0 predicted at confidences 0.5, 0.95, 0.7 -> median 0.7;
    # class 1 at 0.7, 0.96, 0.98 -> median 0.96, capped at 0.9; class 2 never predicted -> the cap
    first = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.7, 0.1], [0.02, 0.96, 0.02]]).T.reshape(1, 3, 1, 3)
    second = torch.tensor([[0.95, 0.03, 0.02], [0.7, 0.2, 0.1], [0.01, 0.98, 0.01]]).T.reshape(1, 3, 1, 3)
    thresholds = class_median_thresholds(iter([first, second]), num_classes=3, cap=0.9)
    torch.testing.assert_close(thresholds, torch.tensor([0.7, 0.9, 0.9]), rtol=0, atol=0)  # picked, not computed
    labels = make_pseudo_labels(first, rule="class_median", class_thresholds=torch.tensor([0.6, 0.8, 0.9]))
    assert labels.flatten().tolist() == [IGNORE, IGNORE, 1]
