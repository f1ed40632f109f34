"""Optical flow for frame pairs: exact flow when the data set provides it, else OpenCV DIS through a disk cache."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from stpl.config import FlowConfig
from stpl.flow.cache import FlowCache, decode_flow, encode_flow, read_flow_file, write_flow_file
from stpl.flow.dis import DISFlow
from stpl.progress import Progress

__all__ = [
    "DISFlow",
    "FlowCache",
    "decode_flow",
    "encode_flow",
    "estimate_pair_flows",
    "read_flow_file",
    "write_flow_file",
]


def estimate_pair_flows(
    frames: np.ndarray,
    pairs: np.ndarray,
    names: Sequence[str],
    dataset_id: str,
    config: FlowConfig,
    label: str = "flow",
) -> np.ndarray:
    """DIS flow [P,H,W,2] for each (current, previous) index pair, read from the cache where present."""
    estimator = DISFlow(config.dis_preset)
    cache = FlowCache(config.cache_dir)
    height, width = frames.shape[1:3]
    flows = np.empty((len(pairs), height, width, 2), dtype=np.float32)
    computed = 0
    started = time.perf_counter()
    progress = Progress(label, len(pairs), every_seconds=5.0)
    for row, (current, previous) in enumerate(pairs):
        key = cache.key(dataset_id, names[current], names[previous], (height, width), estimator.name)
        cached = cache.get(key)
        if cached is None:
            flow = estimator(frames[current], frames[previous])
            cache.put(key, flow)
            # Store what the cache will return later, so a first run and a cached run see identical flow.
            cached = decode_flow(encode_flow(flow))
            computed += 1
        flows[row] = cached
        progress.update(row + 1)
    elapsed = time.perf_counter() - started
    if computed:
        progress.done(
            f"{computed} pairs computed ({computed / max(elapsed, 1e-9):.0f} pairs/s), "
            f"{len(pairs) - computed} from cache"
        )
    return flows
