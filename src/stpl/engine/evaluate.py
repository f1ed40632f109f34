"""Dataset-level confusion matrix, IoU and mIoU, and evaluation of a model on a labelled split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from stpl.constants import IGNORE_INDEX
from stpl.data.pairs import PairDataset
from stpl.models.segmenter import upsample
from stpl.progress import Progress


class ConfusionMatrix:
    """rows = ground truth, columns = prediction; pixels labelled IGNORE_INDEX are skipped."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def update(self, prediction: Tensor, target: Tensor) -> None:
        keep = (target != IGNORE_INDEX) & (target >= 0) & (target < self.num_classes)
        index = target[keep].long() * self.num_classes + prediction[keep].long()
        counts = torch.bincount(index.cpu(), minlength=self.num_classes**2)
        self.matrix += counts.view(self.num_classes, self.num_classes)

    def iou(self) -> list[float | None]:
        """Per-class IoU; None where the class is neither in the ground truth nor in the predictions."""
        matrix = self.matrix.double()
        true_positive = matrix.diag()
        union = matrix.sum(0) + matrix.sum(1) - true_positive
        return [None if u == 0 else float(tp / u) for tp, u in zip(true_positive, union, strict=True)]

    def mean_iou(self) -> float:
        values = [v for v in self.iou() if v is not None]
        return float(sum(values) / len(values)) if values else float("nan")

    def pixel_accuracy(self) -> float:
        total = int(self.matrix.sum())
        return float(self.matrix.diag().sum()) / total if total else float("nan")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: PairDataset,
    batch_size: int,
    reported: Sequence[str] | None = None,
    label: str = "eval",
) -> dict[str, Any]:
    """The fused video prediction of every labelled pair, at the label resolution; mIoU in 0-100.

    `reported`: the classes averaged into mIoU (default all); the confusion matrix always covers every class,
    as the peers do when they report 11 of SYNTHIA's 12 trained classes.
    """
    confusion = ConfusionMatrix(dataset.num_classes)
    accumulate(model, dataset, batch_size, confusion, label)
    return scores(confusion, dataset.class_names, reported, len(dataset))


@torch.no_grad()
def accumulate(model: nn.Module, dataset: PairDataset, batch_size: int, confusion: ConfusionMatrix, label: str) -> None:
    """Add the fused video prediction of every labelled pair of `dataset` to `confusion` (several data sets may
    then be scored as one)."""
    if not dataset.has_labels:
        raise ValueError("evaluation needs a labelled split")
    device = next(model.parameters()).device
    model.eval()
    progress = Progress(label, len(dataset), every_seconds=10.0)
    for batch in dataset.iterate(batch_size):
        batch = batch.to(device)
        logits = model(batch.current, batch.previous, batch.flow).logits
        prediction = upsample(logits, batch.label.shape[-2:]).argmax(dim=1)
        confusion.update(prediction, batch.label)
        progress.update(batch.index[-1] + 1)


def scores(
    confusion: ConfusionMatrix, class_names: Sequence[str], reported: Sequence[str] | None, num_frames: int
) -> dict[str, Any]:
    """The result of an evaluation from its confusion matrix: mIoU over `reported` (default all), per-class IoU."""
    per_class = {
        name: None if value is None else 100.0 * value for name, value in zip(class_names, confusion.iou(), strict=True)
    }
    reported = list(class_names if reported is None else reported)
    averaged = [per_class[name] for name in reported if per_class[name] is not None]
    return {
        "mIoU": sum(averaged) / len(averaged) if averaged else float("nan"),
        "per_class": per_class,
        "classes": list(class_names),
        "reported_classes": reported,
        "pixel_accuracy": 100.0 * confusion.pixel_accuracy(),
        "num_frames": num_frames,
    }
