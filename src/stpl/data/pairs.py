"""Typed frame pairs: the unit every model, method and metric works on.

A pair is frame t, its earlier frame t-k, the backward flow from t to t-k, and (when allowed) frame t's label.
Datasets hold frames, labels and flow as numpy arrays, or on disk read per batch (data.storage, data/storage.py);
batches are converted to float tensors on the model's device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from stpl.config import Config
from stpl.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from stpl.data.geometric import draw_scale_crop, scale_crop
from stpl.data.photometric import photometric_frames
from stpl.data.storage import RowArray, zeros_like


@dataclass
class PairBatch:
    current: Tensor  # [B,3,H,W] float, ImageNet-normalised
    previous: Tensor  # [B,3,H,W]
    flow: Tensor  # [B,2,H,W] backward flow t -> t-k, pixels
    label: Tensor | None  # [B,H,W] long, IGNORE_INDEX = void; None when labels are withheld
    index: list[int] = field(default_factory=list)  # dataset indices of the pairs
    # A temporal teacher's look ahead (PairDataset.later): the pairs (t+k, t) that follow these, the forward
    # flow t -> t+k [B,2,H,W], and which pairs have a later frame at all [B] bool.
    later: PairBatch | None = None
    forward_flow: Tensor | None = None
    has_later: Tensor | None = None
    # Labelled source pairs drawn for the same step (SourceAndTarget), for the methods that declare
    # `uses_source` (domain adaptation with source data); None for every source-free method.
    source: PairBatch | None = None

    def pin_memory(self) -> PairBatch:
        """Page-locked copies (what a DataLoader with pin_memory calls), for asynchronous copies to a GPU."""
        return self._map(lambda tensor: tensor.pin_memory())

    def to(self, device: torch.device | str) -> PairBatch:
        return self._map(lambda tensor: tensor.to(device, non_blocking=True))

    def _map(self, function: Callable[[Tensor], Tensor]) -> PairBatch:
        def apply(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else function(tensor)

        return PairBatch(
            function(self.current),
            function(self.previous),
            function(self.flow),
            apply(self.label),
            self.index,
            None if self.later is None else self.later._map(function),
            apply(self.forward_flow),
            apply(self.has_later),
            None if self.source is None else self.source._map(function),
        )


def photometric_augment(batch: PairBatch, generator: torch.Generator, strength: float = 1.0) -> PairBatch:
    """The batch with random brightness, contrast, saturation, per-channel gain, blur and noise, shared by both
    frames of a pair (data/photometric.py). A temporal teacher's look ahead is dropped: the views this makes are a
    student's or a supervised model's."""
    current, previous = photometric_frames(batch.current, batch.previous, generator, strength)
    return dataclasses.replace(batch, current=current, previous=previous, later=None, forward_flow=None,
                               has_later=None)  # fmt: skip


@dataclass
class LaterNeighbours:
    """For each pair (t, t-k) of a data set, the pair (t+k, t) that follows it and the forward flow t -> t+k."""

    pair_index: np.ndarray  # [P] int64; -1 where frame t is the last of its clip in the split
    flows: RowArray  # [P,H,W,2] float32 forward flow in pixels; zero where there is no later frame


class PairDataset:
    """Frame pairs of one split.

    frames: [N,H,W,3] uint8; pairs: [P,2] indices (current, previous) into frames; flows: [P,H,W,2] float32;
    labels: [N,H,W] uint8 or None (withheld); names: one identifier per frame for logs and caches;
    flow_id: the data set's name in the flow cache (with `names`, the key of a frame pair's flow);
    later: the following pairs and forward flows for a temporal teacher (data/neighbours.py), or None.
    """

    def __init__(
        self,
        frames: RowArray,
        pairs: np.ndarray,
        flows: RowArray,
        labels: RowArray | None,
        class_names: Sequence[str],
        names: Sequence[str],
        flow_id: str = "",
        later: LaterNeighbours | None = None,
    ):
        if len(pairs) != len(flows):
            raise ValueError(f"{len(pairs)} pairs but {len(flows)} flow fields")
        if labels is not None and len(labels) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(labels)} labels")
        self.frames = frames
        self.pairs = pairs
        self.flows = flows
        self.labels = labels
        self.class_names = tuple(class_names)
        self.names = list(names)
        self.flow_id = flow_id
        self.later = later

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def __len__(self) -> int:
        return len(self.pairs)

    def without_labels(self) -> PairDataset:
        return PairDataset(
            self.frames, self.pairs, self.flows, None, self.class_names, self.names, self.flow_id, self.later
        )

    def without_time(self) -> PairDataset:
        """The no-temporal control: every pair becomes (frame t, frame t) with zero flow, and no look ahead."""
        pairs = np.stack((self.pairs[:, 0], self.pairs[:, 0]), axis=1)
        flows = zeros_like(self.flows)
        return PairDataset(self.frames, pairs, flows, self.labels, self.class_names, self.names, self.flow_id)

    def with_later(self, later: LaterNeighbours) -> PairDataset:
        if len(later.pair_index) != len(self.pairs):
            raise ValueError(f"{len(self.pairs)} pairs but {len(later.pair_index)} later neighbours")
        return PairDataset(
            self.frames, self.pairs, self.flows, self.labels, self.class_names, self.names, self.flow_id, later
        )

    def batch(self, indices: Sequence[int], hflip: Sequence[bool] | None = None) -> PairBatch:
        """Gather pairs into a normalised float batch; `hflip` mirrors chosen pairs (flow x negated). With
        `later`, the batch carries the following pairs and forward flows, mirrored alike."""
        batch = self._gather(indices, hflip)
        if self.later is None:
            return batch
        indices = list(indices)
        following = self.later.pair_index[indices]
        has_later = torch.from_numpy(following >= 0)
        later = self._gather(np.where(following >= 0, following, indices).tolist(), hflip)
        forward = torch.from_numpy(np.ascontiguousarray(self.later.flows[indices], dtype=np.float32))
        forward = _mirror_flows(forward.permute(0, 3, 1, 2), hflip)
        return dataclasses.replace(batch, later=later, forward_flow=forward.contiguous(), has_later=has_later)

    def _gather(self, indices: Sequence[int], hflip: Sequence[bool] | None) -> PairBatch:
        indices = list(indices)
        current_idx = self.pairs[indices, 0]
        previous_idx = self.pairs[indices, 1]
        current = torch.from_numpy(self.frames[current_idx]).permute(0, 3, 1, 2)
        previous = torch.from_numpy(self.frames[previous_idx]).permute(0, 3, 1, 2)
        flow = torch.from_numpy(np.ascontiguousarray(self.flows[indices], dtype=np.float32)).permute(0, 3, 1, 2)
        label = None if self.labels is None else torch.from_numpy(self.labels[current_idx]).long()
        if hflip is not None and any(hflip):
            mask = torch.tensor(list(hflip))
            current[mask] = current[mask].flip(-1)
            previous[mask] = previous[mask].flip(-1)
            flow = _mirror_flows(flow, hflip)
            if label is not None:
                label[mask] = label[mask].flip(-1)
        return PairBatch(normalize(current), normalize(previous), flow.contiguous(), label, indices)

    def iterate(self, batch_size: int, shuffle_seed: int | None = None) -> Iterator[PairBatch]:
        """All pairs once: in order (evaluation), or in a seeded random order."""
        order = np.arange(len(self))
        if shuffle_seed is not None:
            order = np.random.default_rng(shuffle_seed).permutation(len(self))
        for start in range(0, len(self), batch_size):
            yield self.batch(order[start : start + batch_size].tolist())


def _mirror_flows(flow: Tensor, hflip: Sequence[bool] | None) -> Tensor:
    """Flow fields [B,2,H,W] of the mirrored pairs flipped left-right, their x component negated."""
    if hflip is None or not any(hflip):
        return flow
    mask = torch.tensor(list(hflip))
    flow = flow.clone()
    flow[mask] = flow[mask].flip(-1) * torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1)
    return flow


def label_size(config: Config, split: str) -> tuple[int, int]:
    """Labels are read at the data size, except the evaluated split's when eval.label_height/width ask otherwise."""
    if split == config.eval.split and config.eval.label_height > 0 and config.eval.label_width > 0:
        return config.eval.label_height, config.eval.label_width
    return config.data.height, config.data.width


def normalize(images_uint8: Tensor) -> Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images_uint8.float() / 255.0 - mean) / std


def denormalize(images: Tensor) -> Tensor:
    """Inverse of `normalize`, back to [0, 255] floats (for flow estimation and pictures)."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((images * std + mean) * 255.0).clamp(0, 255)


class RandomBatches:
    """Endless seeded sampling of shuffled batches (epochs without replacement), resumable by step.

    Optional augmentation, drawn per pair from (seed, step): a horizontal flip, and a random scale in
    `scale_range` followed by a crop back to the data size (data/geometric.py), both applied alike to frame t,
    frame t-k, the flow and the label; and photometric noise of strength `photometric` (data/photometric.py),
    alike for both frames.
    """

    def __init__(
        self,
        dataset: PairDataset,
        batch_size: int,
        seed: int,
        hflip: bool = False,
        scale_range: tuple[float, ...] = (),
        photometric: float = 0.0,
    ):
        if len(dataset) == 0:
            raise ValueError("cannot sample batches from an empty dataset")
        self.dataset = dataset
        self.batch_size = min(batch_size, len(dataset))
        self.seed = seed
        self.hflip = hflip
        self.scale_range = scale_range
        self.photometric = photometric

    def get(self, step: int) -> PairBatch:
        """The batch for a given step: a pure function of (seed, step), so a resumed run sees the same data."""
        per_epoch = len(self.dataset) // self.batch_size
        epoch, position = divmod(step, per_epoch)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.dataset))
        indices = order[position * self.batch_size : (position + 1) * self.batch_size]
        flips = None
        if self.hflip:
            flips = np.random.default_rng([self.seed, epoch, position, 1]).random(len(indices)) < 0.5
            flips = flips.tolist()
        batch = self.dataset.batch(indices.tolist(), flips)
        if self.scale_range:
            if batch.later is not None:
                raise ValueError("scale_range does not move a temporal teacher's look ahead (PairDataset.later)")
            draws = draw_scale_crop(
                np.random.default_rng([self.seed, epoch, position, 2]), len(indices), self.scale_range
            )
            current, previous, flow, label = scale_crop(
                batch.current, batch.previous, batch.flow, batch.label, draws, IGNORE_INDEX
            )
            batch = PairBatch(current, previous, flow, label, batch.index)
        if self.photometric > 0:
            if batch.later is not None:
                raise ValueError("photometric augmentation does not reach a temporal teacher's look ahead")
            generator = torch.Generator().manual_seed(
                int(np.random.default_rng([self.seed, epoch, position, 3]).integers(2**62))
            )
            batch = photometric_augment(batch, generator, self.photometric)
        return batch


class SourceAndTarget:
    """The batches of a domain-adaptation run that uses source data: each step's target batch carries, as
    `PairBatch.source`, that step's labelled source batch. Both are pure functions of (seed, step), so a resumed
    run sees the same pairs; the source stream has its own seed, so its order is not the target's."""

    def __init__(self, target: RandomBatches, source: RandomBatches):
        self.target = target
        self.source = source

    def get(self, step: int) -> PairBatch:
        batch = self.target.get(step)
        batch.source = self.source.get(step)
        return batch
