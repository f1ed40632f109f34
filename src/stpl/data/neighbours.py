"""The look ahead of a temporal teacher: for each pair (t, t-k) of a split, the pair (t+k, t) that follows it.

Adaptation is offline, so the teacher may look at frame t+k as well as t-k: what a nuisance hides in frame t, the
next frame may show. The following pair is found among the split's own pairs (its earlier frame is frame t); the
forward flow t -> t+k comes from DIS through the flow cache like every other flow, whatever flow the split uses.
"""

from __future__ import annotations

import dataclasses
import tempfile

import numpy as np

from stpl.config import FlowConfig
from stpl.data.pairs import LaterNeighbours, PairDataset
from stpl.data.storage import SelectedRows
from stpl.errors import StplError
from stpl.flow import estimate_pair_flows


def following_pairs(pairs: np.ndarray) -> np.ndarray:
    """[P] index of the pair whose earlier frame is pair p's current frame, -1 where none; pairs of a frame with
    itself (the first frame of a clip, the no-temporal control) lead nowhere."""
    after = {int(earlier): row for row, (current, earlier) in enumerate(pairs) if current != earlier}
    return np.asarray([after.get(int(current), -1) for current, _ in pairs], dtype=np.int64)


def with_later_neighbours(dataset: PairDataset, config: FlowConfig) -> PairDataset:
    """`dataset` carrying, for each pair, its following pair and the forward flow t -> t+k (zero where none)."""
    following = following_pairs(dataset.pairs)
    have = np.flatnonzero(following >= 0)
    if len(have) == 0:
        raise StplError(
            "adapt.teacher_later: no frame of the adaptation split has a later frame in it (each pair stands alone), "
            "so there is nothing to look ahead to; turn the option off for this data set"
        )
    forward_pairs = np.stack((dataset.pairs[have, 0], dataset.pairs[following[have], 0]), axis=1)
    # A data set without a cache name must not share the cache, so its flow goes to a scratch one and is kept.
    in_memory = isinstance(dataset.flows, np.ndarray) or not dataset.flow_id
    with tempfile.TemporaryDirectory() as scratch:
        flow_config = config if dataset.flow_id else dataclasses.replace(config, cache_dir=scratch)
        forward = estimate_pair_flows(
            dataset.frames, forward_pairs, dataset.names, dataset.flow_id, flow_config, "flow t->t+k", in_memory
        )
    if in_memory:
        flows = np.zeros(dataset.flows.shape, np.float32)
        flows[have] = forward
    else:  # read per batch from the flow cache, zero where no later frame exists
        source_row = np.full(len(following), -1, dtype=np.int64)
        source_row[have] = np.arange(len(have))
        flows = SelectedRows(forward, source_row, tuple(dataset.flows.shape[1:]))
    print(f"[adapt] look ahead: {len(have)} of {len(following)} pairs have a later frame", flush=True)
    return dataset.with_later(LaterNeighbours(following, flows))
