"""Optical flow for frame pairs: exact flow when the data set provides it, else OpenCV DIS through a disk cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from stpl.config import FlowConfig
from stpl.errors import StplError
from stpl.flow.cache import FlowCache, decode_flow, encode_flow, frame_digest, read_flow_file, write_flow_file
from stpl.flow.dis import DISFlow
from stpl.lazy_rows import LazyRows
from stpl.progress import Progress

__all__ = [
    "CachedFlows",
    "DISFlow",
    "FlowCache",
    "decode_flow",
    "encode_flow",
    "estimate_pair_flows",
    "read_flow_file",
    "write_flow_file",
]


class CachedFlows(LazyRows):
    """Flow fields [P,H,W,2] float32 left in the flow cache and read per request (data.storage "disk")."""

    def __init__(self, cache: FlowCache, keys: Sequence[str], size: tuple[int, int]):
        super().__init__(len(keys), (*size, 2), np.float32)
        self._cache = cache
        self._keys = list(keys)

    def _read_into(self, rows: np.ndarray, out: np.ndarray) -> None:
        for position, row in enumerate(rows.tolist()):
            flow = self._cache.get(self._keys[row], self.shape[1:3])
            if flow is None:
                path = self._cache.path(self._keys[row])
                raise StplError(
                    f"flow cache entry {path} vanished or was damaged during the run (data.storage=disk); run the "
                    "same command again to compute it anew"
                )
            out[position] = flow


def estimate_pair_flows(
    frames: np.ndarray,  # or a disk-stored split's rows (stpl.data.storage): shape and row reads
    pairs: np.ndarray,
    names: Sequence[str],
    dataset_id: str,
    config: FlowConfig,
    label: str = "flow",
    in_memory: bool = True,
) -> np.ndarray | CachedFlows:
    """DIS flow [P,H,W,2] for each (current, previous) index pair, read from the cache where present.

    Missing pairs are computed by `config.workers` threads (OpenCV releases the GIL) and written to the cache as
    they finish, so an interrupted run keeps what it computed. in_memory False: the fields stay in the cache and
    come back as a `CachedFlows` view read per batch (memory independent of the number of pairs).
    """
    cache = FlowCache(config.cache_dir)
    height, width = frames.shape[1:3]
    estimator_name = DISFlow(config.dis_preset, config.scale).name
    flows = np.empty((len(pairs), height, width, 2), dtype=np.float32) if in_memory else None
    digests: dict[int, str] = {}

    def digest(index: int) -> str:
        if index not in digests:
            digests[index] = frame_digest(frames[index])
        return digests[index]

    keys = [
        cache.key(dataset_id, names[c], names[p], (height, width), estimator_name, digest(c) + digest(p))
        for c, p in pairs
    ]
    missing = []
    for row, key in enumerate(keys):
        cached = cache.get(key, (height, width))  # checked (digest, shape) even when it stays on disk
        if cached is None:
            missing.append(row)
        elif in_memory:
            flows[row] = cached
    if cache.damaged:
        print(
            f"[{label}] {len(cache.damaged)} damaged or unverified cache entries (written before entries carried a "
            f"digest, or changed since; e.g. {cache.damaged[0]}) computed again",
            flush=True,
        )
    result = flows if in_memory else CachedFlows(cache, keys, (height, width))
    if not missing:
        print(f"[{label}] {len(pairs)} pairs from the cache in {cache.directory}", flush=True)
        return result
    local = threading.local()

    def compute(row: int) -> int:
        if not hasattr(local, "estimator"):
            local.estimator = DISFlow(config.dis_preset, config.scale)  # one DIS object per thread
        current, previous = pairs[row]
        flow = local.estimator(frames[current], frames[previous])
        cache.put(keys[row], flow)
        if in_memory:  # keep what the cache will return later, so a first run and a cached run see identical flow
            flows[row] = decode_flow(encode_flow(flow))
        return row

    progress = Progress(label, len(missing), every_seconds=5.0)
    started = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=max(1, config.workers))
    try:
        for done, _ in enumerate(pool.map(compute, missing), start=1):
            progress.update(done)
    except BaseException:  # Ctrl-C, SIGTERM, an error: drop the queued pairs (those done are cached) and stop now
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    rate = len(missing) / max(time.perf_counter() - started, 1e-9)
    progress.done(
        f"{len(missing)} pairs computed ({rate:.0f} pairs/s), {len(pairs) - len(missing)} from the cache in "
        f"{cache.directory}"
    )
    return result
