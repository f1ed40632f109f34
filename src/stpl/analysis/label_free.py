"""A label-free estimate of how well a model segments a video: what a user without labels can compare.

Every part is computed from predictions alone (no label, no source data) and lies in [0, 1]:

- temporal_miou: flow-warped temporal consistency (Varghese et al., CVPRW 2020) as a class-mean IoU: the model's
  per-frame prediction of frame t against its prediction of frame t-1 warped to t by the flow, over pixels the
  flow keeps inside the frame. Per-frame predictions (no fusion with the earlier frame) so that a video model
  cannot score by copying the frame before.
- augmentation_miou: agreement under augmentation: the prediction of a mirrored and of a down-scaled copy of each
  pair, brought back, against the plain prediction (the test-time ensemble idea; Jiang et al.'s disagreement
  view of accuracy, ICLR 2022).
- source_miou: agreement with the reference (source) model's prediction (source-free accuracy estimation by
  agreement with another labeller, ICCV 2023); 1 for the reference itself.
- class_coverage: the share of the reference's classes the model still predicts (OASIS, CVPR 2022, resets when a
  model predicts fewer classes than the source).
- confidence (mean top-class probability), entropy (mean entropy / log K) and soft neighbourhood density (SND,
  Saito et al., ICCV 2021, on sampled pixels' class probabilities, divided by its maximum log(N - 1)).

Class-mean IoUs run over the *reference classes*: those the reference model predicts on at least
`MIN_CLASS_SHARE` of the pixels (every class when there is no reference). A reference class that neither compared
prediction shows scores 0, not "absent": a constant mask is perfectly consistent in time and under augmentation,
yet it scores 1 / (number of reference classes) here, so collapse never scores well.

- class_identity: the share of the reference's classes that keep their identity in the model's prediction (see
  `AgreementMatrix.kept_identity`); 1 without a reference. Consistency cannot see a model that swaps two classes;
  this can.

The estimate is one number, 100 x the mean of temporal_miou and augmentation_miou x class_identity (`estimate`);
over a stream, where each frame is predicted once and no augmented copy is made, the temporal part alone
(`temporal_estimate`). Both were chosen on held-out adaptation frames (docs/label_free.md): on real video 1 s apart
the temporal part alone moves too little to tell adapting from not. The other parts are kept beside it.
Comparable between models on the same video and reference, not between videos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stpl.data.pairs import PairBatch, PairDataset
from stpl.models.segmenter import SegmenterOutput, predict_sharing_frames

MIN_CLASS_SHARE = 0.001  # a class the reference predicts on fewer pixels than this is not counted
DOWNSCALE = 0.75  # the augmentation's resize (the other one is a left-right mirror)
AUGMENTATIONS = ("mirror", "downscale")  # in the order pair_predictions returns them
SND_TEMPERATURE = 0.05  # Saito et al.'s value
SND_PIXELS_PER_PAIR = 64  # sampled pixels per pair for SND, up to SND_MAX_PIXELS in all
SND_MAX_PIXELS = 2048


class AgreementMatrix:
    """Counts of (class in prediction A, class in prediction B) over pixels, and the class-mean IoU of the two."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.float64)

    def add(self, first: Tensor, second: Tensor, keep: Tensor | None = None) -> None:
        """first, second: [...] class ids; keep: [...] bool, the pixels to count (default all)."""
        if keep is not None:
            first, second = first[keep], second[keep]
        index = first.reshape(-1).long() * self.num_classes + second.reshape(-1).long()
        counts = torch.bincount(index.cpu(), minlength=self.num_classes**2)
        self.counts += counts.view(self.num_classes, self.num_classes).double()

    def mean_iou(self, classes: list[int]) -> float:
        """Mean over `classes` of tp / union; a class neither prediction shows counts 0 (see the module doc)."""
        if not classes:
            return 0.0
        true_positive = self.counts.diag()
        union = self.counts.sum(0) + self.counts.sum(1) - true_positive
        values = [float(true_positive[c] / union[c]) if union[c] > 0 else 0.0 for c in classes]
        return sum(values) / len(values)

    def kept_identity(self, classes: list[int]) -> float:
        """The share of `classes` that keep their identity from prediction A (rows) to B (columns): class c of A
        overlaps B's class c best of all B's classes, or B's class c overlaps A's class c best (either way round,
        so that a class that grows or shrinks keeps it). Swapped or merged classes lose it."""
        if not classes:
            return 0.0
        true_positive = self.counts.diag()
        union = self.counts.sum(1, keepdim=True) + self.counts.sum(0, keepdim=True) - self.counts
        iou = torch.where(union > 0, self.counts / union.clamp_min(1e-30), torch.zeros_like(union))
        kept = [
            bool(true_positive[c] > 0) and (int(iou[c].argmax()) == c or int(iou[:, c].argmax()) == c) for c in classes
        ]
        return sum(kept) / len(classes)

    def pixel_agreement(self) -> float:
        """The share of counted pixels on which the two predictions agree (0 when none was counted)."""
        total = float(self.counts.sum())
        return float(self.counts.diag().sum()) / total if total > 0 else 0.0


def soft_neighbourhood_density(probabilities: Tensor, temperature: float = SND_TEMPERATURE) -> float:
    """SND of N samples' class probabilities [N,K] in [0, 1]: the mean entropy of each sample's softmax over its
    cosine similarities to the others (itself left out), divided by log(N - 1). Tight, well separated clusters
    give low density entropy within a cluster; Saito et al. pick the model with the highest value."""
    count = probabilities.shape[0]
    if count < 3:
        return float("nan")
    unit = F.normalize(probabilities.double(), dim=1)
    similarity = unit @ unit.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    neighbours = similarity.softmax(dim=1)
    entropy = -(neighbours * neighbours.clamp_min(1e-30).log()).sum(dim=1)
    return float(entropy.mean() / math.log(count - 1))


def _class_counts(classes: Tensor, num_classes: int) -> Tensor:
    return torch.bincount(classes.reshape(-1).cpu(), minlength=num_classes).double()


def reference_classes(class_pixels: Tensor, min_share: float = MIN_CLASS_SHARE) -> list[int]:
    """The classes a prediction shows on at least `min_share` of its pixels ([K] pixel counts)."""
    total = float(class_pixels.sum())
    if total <= 0:
        return []
    return [c for c in range(len(class_pixels)) if float(class_pixels[c]) / total >= min_share]


@dataclass
class PairPredictions:
    """What the estimate needs of a model's predictions on a batch of pairs, at the feature resolution."""

    video: Tensor  # [B,K,h,w] logits of the fused video prediction (what the model outputs)
    frame: Tensor  # [B,K,h,w] frame t's own logits
    warped_earlier: Tensor  # [B,K,h,w] frame t-1's own logits warped to t
    valid: Tensor  # [B,h,w] bool, the flow stays inside frame t-1
    augmented: list[Tensor]  # [B,K,h,w] logits of augmented copies, brought back to the plain frame's geometry


class LabelFreeScores:
    """Accumulates the parts over a video's pairs; `result()` gives the parts and the estimate."""

    def __init__(self, num_classes: int, seed: int = 0):
        self.num_classes = num_classes
        self.temporal = AgreementMatrix(num_classes)
        self.augmentations = [AgreementMatrix(num_classes) for _ in AUGMENTATIONS]
        self.source = AgreementMatrix(num_classes)
        self.class_pixels = torch.zeros(num_classes, dtype=torch.float64)
        self.reference_pixels = torch.zeros(num_classes, dtype=torch.float64)
        self.has_reference = False
        self.confidence_sum = 0.0
        self.entropy_sum = 0.0
        self.pixels = 0
        self.samples: list[Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def add(self, predictions: PairPredictions, reference_video: Tensor | None = None) -> None:
        probabilities = predictions.video.float().softmax(dim=1)
        classes = probabilities.argmax(dim=1)
        self.temporal.add(predictions.frame.argmax(dim=1), predictions.warped_earlier.argmax(dim=1), predictions.valid)
        for matrix, augmented in zip(self.augmentations, predictions.augmented, strict=True):
            matrix.add(classes, augmented.argmax(dim=1))
        if reference_video is not None:
            self.has_reference = True
            reference_map = reference_video.argmax(dim=1)
            self.source.add(reference_map, classes)
            self.reference_pixels += _class_counts(reference_map, self.num_classes)
        self.class_pixels += _class_counts(classes, self.num_classes)
        self.confidence_sum += float(probabilities.amax(dim=1).sum())
        entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum(dim=1) / math.log(self.num_classes)
        self.entropy_sum += float(entropy.sum())
        self.pixels += classes.numel()
        self._sample(probabilities)

    def _sample(self, probabilities: Tensor) -> None:
        """A few pixels of each pair for SND, drawn with the scores' own generator (the same pixels for every
        model scored on the same pairs and shapes)."""
        taken = sum(len(s) for s in self.samples)
        for image in probabilities.permute(0, 2, 3, 1).reshape(probabilities.shape[0], -1, self.num_classes):
            count = min(SND_PIXELS_PER_PAIR, SND_MAX_PIXELS - taken, image.shape[0])
            if count <= 0:
                return
            chosen = torch.randperm(image.shape[0], generator=self.generator)[:count]
            self.samples.append(image[chosen.to(image.device)].cpu())
            taken += count

    def result(self) -> dict[str, Any]:
        samples = torch.cat(self.samples) if self.samples else torch.zeros(0, self.num_classes)
        # the raw counts, so that another reading of the same predictions needs no second pass
        counts = {
            "temporal": self.temporal.counts.tolist(),
            **{name: m.counts.tolist() for name, m in zip(AUGMENTATIONS, self.augmentations, strict=True)},
            "source": self.source.counts.tolist() if self.has_reference else None,
            "class_pixels": self.class_pixels.tolist(),
            "reference_pixels": self.reference_pixels.tolist() if self.has_reference else None,
        }
        parts: dict[str, Any] = {
            **count_parts(counts),
            "confidence": self.confidence_sum / max(self.pixels, 1),
            "entropy": self.entropy_sum / max(self.pixels, 1),
            "snd": soft_neighbourhood_density(samples),
        }
        return {"estimate": estimate_from_parts(parts), "parts": parts, "counts": counts}


def _matrix(counts: list[list[float]]) -> AgreementMatrix:
    matrix = AgreementMatrix(len(counts))
    matrix.counts = torch.tensor(counts, dtype=torch.float64)
    return matrix


def count_parts(counts: dict[str, Any], min_share: float = MIN_CLASS_SHARE) -> dict[str, Any]:
    """The parts that are read off the agreement counts (`LabelFreeScores.result()["counts"]`), so that stored
    counts can be read again (another class share, another part) without predicting again."""
    has_reference = counts.get("reference_pixels") is not None
    num_classes = len(counts["class_pixels"])
    pixels = torch.tensor(counts["reference_pixels" if has_reference else "class_pixels"], dtype=torch.float64)
    classes = reference_classes(pixels, min_share) if has_reference else list(range(num_classes))
    own = set(reference_classes(torch.tensor(counts["class_pixels"], dtype=torch.float64), min_share))
    temporal = _matrix(counts["temporal"])
    augmentations = [_matrix(counts[name]) for name in AUGMENTATIONS]
    source = _matrix(counts["source"]) if has_reference else None
    return {
        "temporal_miou": temporal.mean_iou(classes),
        "augmentation_miou": sum(m.mean_iou(classes) for m in augmentations) / len(augmentations),
        "source_miou": source.mean_iou(classes) if source is not None else None,
        "class_identity": source.kept_identity(classes) if source is not None else 1.0,
        "class_coverage": len(own & set(classes)) / len(classes) if classes else 0.0,
        "temporal_pixels": temporal.pixel_agreement(),
        "augmentation_pixels": sum(m.pixel_agreement() for m in augmentations) / len(augmentations),
        "reference_classes": len(classes),
    }


def _mirror(batch: PairBatch) -> tuple[Tensor, Tensor, Tensor]:
    flow = batch.flow.flip(-1) * batch.flow.new_tensor([-1.0, 1.0]).view(1, 2, 1, 1)
    return batch.current.flip(-1), batch.previous.flip(-1), flow


def _downscale(batch: PairBatch, scale: float) -> tuple[Tensor, Tensor, Tensor]:
    height, width = batch.current.shape[-2:]
    size = (max(8, round(height * scale)), max(8, round(width * scale)))

    def resize(images: Tensor) -> Tensor:
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)

    ratio = batch.flow.new_tensor([size[1] / width, size[0] / height]).view(1, 2, 1, 1)
    return resize(batch.current), resize(batch.previous), resize(batch.flow) * ratio


@torch.no_grad()
def pair_predictions(model: nn.Module, batch: PairBatch, temporal: bool = True) -> PairPredictions:
    """The model's plain prediction of a batch of pairs and of its mirrored and down-scaled copies, brought back.

    `temporal` False: the model predicts each frame paired with itself (the no-temporal control), so its video
    prediction and augmented copies are computed that way; its temporal consistency still uses the real pairs.
    """
    output = predict_sharing_frames(model, batch.current, batch.previous, batch.flow)
    if temporal:
        video, pairs = output.logits, batch
    else:
        pairs = PairBatch(batch.current, batch.current, torch.zeros_like(batch.flow), None)
        video = predict_sharing_frames(model, pairs.current, pairs.previous, pairs.flow).logits
    size = video.shape[-2:]
    mirrored = predict_sharing_frames(model, *_mirror(pairs)).logits.flip(-1)
    smaller = predict_sharing_frames(model, *_downscale(pairs, DOWNSCALE)).logits
    smaller = F.interpolate(smaller, size=size, mode="bilinear", align_corners=False)
    return PairPredictions(video, output.frame_logits, output.warped_logits, output.valid, [mirrored, smaller])


@torch.no_grad()
def estimate_model(
    model: nn.Module,
    dataset: PairDataset,
    batch_size: int,
    reference: nn.Module | None = None,
    temporal: bool = True,
    reference_temporal: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """The estimate and its parts for `model` on the pairs of `dataset` (real earlier frames and flow; labels, if
    any, are not read); `reference`: the source model whose classes and predictions the parts are measured
    against; `temporal` / `reference_temporal`: whether each model predicts with the earlier frame."""
    if len(dataset) == 0:
        raise ValueError("no frame pairs to estimate on")
    device = next(model.parameters()).device
    model.eval()
    if reference is not None:
        reference.eval()
    scores = LabelFreeScores(dataset.num_classes, seed)
    for batch in dataset.without_labels().iterate(batch_size):
        batch = batch.to(device)
        reference_video = None
        if reference is not None:
            previous, flow = (batch.previous, batch.flow) if reference_temporal else (batch.current, 0 * batch.flow)
            reference_video = predict_sharing_frames(reference, batch.current, previous, flow).logits
        scores.add(pair_predictions(model, batch, temporal), reference_video)
    return scores.result()


def estimate_from_parts(parts: dict[str, Any]) -> float:
    """The estimate of a model on a split's pairs: 100 x the mean of temporal_miou and augmentation_miou, times the
    share of the reference's classes kept (a model that swaps two classes is as consistent as before, and wrong)."""
    consistency = (float(parts["temporal_miou"]) + float(parts["augmentation_miou"])) / 2
    return 100.0 * consistency * float(parts["class_identity"])


def temporal_estimate(parts: dict[str, Any]) -> float:
    """The estimate from temporal consistency alone (what a stream gives for free: no augmented copies), times
    the share of the reference's classes kept: 100 x temporal_miou x class_identity."""
    return 100.0 * float(parts["temporal_miou"]) * float(parts["class_identity"])


class StreamScores:
    """A model's temporal estimate over a stream of predictions, each frame predicted once as it arrives (online
    runs, `stpl predict`), and a reference model's on the same frames when one predicts beside it: its classes
    then count for both. Without a reference every class counts (comparable between models on one video)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.temporal = AgreementMatrix(num_classes)
        self.reference_temporal = AgreementMatrix(num_classes)
        self.source = AgreementMatrix(num_classes)
        self.reference_pixels = torch.zeros(num_classes, dtype=torch.float64)
        self.class_pixels = torch.zeros(num_classes, dtype=torch.float64)
        self.has_reference = False

    def add(self, output: SegmenterOutput, reference: SegmenterOutput | None, has_earlier: bool) -> None:
        """One frame's prediction by the model and by the reference (or None); `has_earlier`: frame t has a real
        earlier frame (the first frame of a stream is paired with itself and says nothing about time)."""
        classes = output.logits.argmax(dim=1)
        predictions = [(self.temporal, output)]
        if reference is not None:
            self.has_reference = True
            reference_map = reference.logits.argmax(dim=1)
            self.source.add(reference_map, classes)
            self.reference_pixels += _class_counts(reference_map, self.num_classes)
            predictions.append((self.reference_temporal, reference))
        if has_earlier:
            for matrix, prediction in predictions:
                frame, earlier = prediction.frame_logits.argmax(dim=1), prediction.warped_logits.argmax(dim=1)
                matrix.add(frame, earlier, prediction.valid)
        self.class_pixels += _class_counts(classes, self.num_classes)

    def counts(self) -> dict[str, Any]:
        matrices = {"temporal": self.temporal, "reference_temporal": self.reference_temporal, "source": self.source}
        pixels = {"class_pixels": self.class_pixels.tolist(), "reference_pixels": self.reference_pixels.tolist()}
        return {**{name: matrix.counts.tolist() for name, matrix in matrices.items()}, **pixels}

    def result(self) -> dict[str, Any]:
        """The model's temporal estimate and parts, and the reference's temporal estimate on the same frames
        (None without a reference)."""
        classes = reference_classes(self.reference_pixels) if self.has_reference else list(range(self.num_classes))
        identity = self.source.kept_identity(classes) if self.has_reference else 1.0
        parts = {"temporal_miou": self.temporal.mean_iou(classes), "class_identity": identity,
                 "source_miou": self.source.mean_iou(classes) if self.has_reference else None,
                 "reference_classes": len(classes)}  # fmt: skip
        reference = None
        if self.has_reference:
            reference = temporal_estimate({"temporal_miou": self.reference_temporal.mean_iou(classes),
                                           "class_identity": 1.0})  # fmt: skip
        return {"estimate": temporal_estimate(parts), "reference_estimate": reference, "kind": "temporal",
                "parts": parts, "counts": self.counts()}  # fmt: skip
