import pytest
import torch

from stpl.engine.evaluate import ConfusionMatrix


def test_confusion_matrix_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 1]])
    confusion = ConfusionMatrix(4)
    confusion.update(prediction, target)
    # rows = truth: class 0 -> {0:1, 1:1}; class 1 -> {1:3}; class 2 -> {2:1, 0:1}; the 255 pixel is skipped
    assert confusion.matrix.tolist() == [[1, 1, 0, 0], [0, 3, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    iou = confusion.iou()
    # Ratios of small integer counts: exact to one float rounding (<= 6e-8 relative even in float32), inside
    # pytest.approx's default rel 1e-6 here and below; a miscount changes a ratio by >= 1/7.
    # class 0: tp 1, fp 1 (from class 2), fn 1 -> 1/3; class 1: tp 3, fp 1 -> 3/4; class 2: tp 1, fn 1 -> 1/2
    assert iou[0] == pytest.approx(1 / 3)
    assert iou[1] == pytest.approx(3 / 4)
    assert iou[2] == pytest.approx(1 / 2)
    assert iou[3] is None  # absent from truth and prediction
    assert confusion.mean_iou() == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert confusion.pixel_accuracy() == pytest.approx(5 / 7)


def test_confusion_accumulates_over_batches():
    confusion = ConfusionMatrix(2)
    confusion.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    confusion.update(torch.tensor([1]), torch.tensor([1]))
    assert confusion.matrix.tolist() == [[1, 1], [0, 1]]
    # a class predicted but absent from the truth counts with IoU 0 (peers' nan-mean convention)
    assert confusion.iou() == [pytest.approx(0.5), pytest.approx(0.5)]


def test_evaluate_averages_only_reported_classes():
    import numpy as np
    from torch import nn

    from stpl.data.pairs import PairDataset
    from stpl.engine.evaluate import evaluate
    from stpl.models.segmenter import SegmenterOutput

    labels = np.array([[[0, 0, 1, 2]]], dtype=np.uint8)  # one 1x4 frame: classes 0, 0, 1, 2

    class Fixed(nn.Module):  # predicts 0, 1, 1, 1: IoU a = 1/2, b = 1/3 (two false positives), c = 0
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, current, previous, flow):
            logits = torch.zeros(1, 3, 1, 4)
            logits[0, 0, 0, 0] = logits[0, 1, 0, 1:] = 1.0
            return SegmenterOutput(logits, logits, logits, torch.ones(1, 1, 4, dtype=torch.bool), logits, logits)

    dataset = PairDataset(
        np.zeros((1, 1, 4, 3), np.uint8), np.array([[0, 0]]), np.zeros((1, 1, 4, 2), np.float32), labels,
        ("a", "b", "c"), ["f0"],
    )  # fmt: skip
    everything = evaluate(Fixed(), dataset, batch_size=1)
    assert everything["mIoU"] == pytest.approx(100 * (1 / 2 + 1 / 3 + 0) / 3)
    two = evaluate(Fixed(), dataset, batch_size=1, reported=["a", "b"])
    assert two["mIoU"] == pytest.approx(100 * (1 / 2 + 1 / 3) / 2) and two["per_class"]["c"] == pytest.approx(0.0)
