"""The paper's k-NN analysis: for sampled labelled target pixels, the share of their k nearest neighbours in
feature space that have the same ground-truth class. A higher share = more class-discriminative features.

Features are the encoder output f_t (what the classifier and the fusion block see), L2-normalised, compared by
cosine similarity. Pixels are sampled at the feature resolution, each labelled by the ground truth at its centre,
up to a fixed number per class so that rare classes are represented.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from stpl.constants import IGNORE_INDEX
from stpl.data.pairs import PairDataset
from stpl.models.segmenter import VideoSegmenter


@torch.no_grad()
def collect_features(
    model: VideoSegmenter, dataset: PairDataset, batch_size: int, per_class: int, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Unit-norm features [N,C] and ground-truth classes [N] of up to `per_class` pixels per class."""
    if not dataset.has_labels:
        raise ValueError("the k-NN analysis needs a labelled split")
    device = next(model.parameters()).device
    model.eval()
    features, labels = [], []
    for batch in dataset.iterate(batch_size):
        batch = batch.to(device)
        encoded = model.encode(batch.current)  # [B,C,h,w]
        size = encoded.shape[-2:]
        # nearest-neighbour label at each feature pixel's centre
        small = F.interpolate(batch.label[:, None].float(), size=size, mode="nearest")[:, 0].long()
        keep = small != IGNORE_INDEX
        features.append(F.normalize(encoded, dim=1).permute(0, 2, 3, 1)[keep].cpu())
        labels.append(small[keep].cpu())
    all_features, all_labels = torch.cat(features), torch.cat(labels)
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for value in torch.unique(all_labels):
        members = torch.nonzero(all_labels == value).squeeze(1)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    index = torch.cat(chosen)
    return all_features[index], all_labels[index]


def same_class_share(features: Tensor, labels: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """For each pixel, the fraction of its k nearest other pixels (cosine) with the same label: [N]."""
    if len(features) <= k:
        raise ValueError(f"need more than k={k} sampled pixels, have {len(features)}")
    shares = []
    for start in range(0, len(features), chunk):
        block = features[start : start + chunk] @ features.t()  # [n,N]
        rows = torch.arange(block.shape[0])
        block[rows, rows + start] = -float("inf")  # a pixel is not its own neighbour
        neighbours = block.topk(k, dim=1).indices
        shares.append((labels[neighbours] == labels[start : start + chunk, None]).float().mean(dim=1))
    return torch.cat(shares)


def knn_report(features: Tensor, labels: Tensor, k: int, class_names: Sequence[str]) -> dict:
    """Overall share (mean over pixels) and per-class shares in percent; None for classes not sampled."""
    shares = same_class_share(features, labels, k)
    per_class = {}
    for index, name in enumerate(class_names):
        members = labels == index
        per_class[name] = float(100 * shares[members].mean()) if bool(members.any()) else None
    sampled = [value for value in per_class.values() if value is not None]
    return {
        "overall": float(100 * shares.mean()),
        "class_mean": float(np.mean(sampled)) if sampled else None,
        "per_class": per_class,
        "pixels": len(labels),
    }
