"""The built-in synthetic benchmark as frame-pair splits: source (labelled, source domain), adapt and eval (target).

Clip seeds are offset per split, so no clip appears in two splits.
"""

from __future__ import annotations

import numpy as np

from stpl.config import Config
from stpl.data.pairs import PairDataset
from stpl.data.storage import RowSink, storage_directory
from stpl.data.synthetic_nuisance import add_temporal_nuisance
from stpl.data.synthetic_scene import SYNTHETIC_CLASSES, generate_clip
from stpl.flow import estimate_pair_flows

GENERATOR_VERSION = 1  # bump when the generator's output changes, so cached flow is not reused
SPLIT_DOMAINS = {"source": "source", "adapt": "target", "eval": "target"}
SPLIT_SEED_OFFSETS = {"source": 0, "adapt": 100_000, "eval": 200_000}


def clip_seeds(config: Config, split: str) -> list[int]:
    synthetic = config.data.synthetic
    count = {"source": synthetic.source_clips, "adapt": synthetic.adapt_clips, "eval": synthetic.eval_clips}[split]
    base = synthetic.seed * 1_000_003 + SPLIT_SEED_OFFSETS[split]
    return [base + i for i in range(count)]


def build_synthetic(config: Config, split: str, with_labels: bool) -> PairDataset:
    domain = SPLIT_DOMAINS[split]
    height, width = config.data.height, config.data.width
    gap, num_frames = config.data.frame_gap, config.data.synthetic.num_frames
    nuisance = config.data.synthetic.temporal_nuisance
    exact_flow = config.flow.method == "exact"
    scratch = storage_directory(config.data)
    frames, labels, true_flows = RowSink(scratch), RowSink(scratch), RowSink(scratch)
    pairs, names = [], []
    for seed in clip_seeds(config, split):  # clip by clip: a disk-stored split is never whole in memory
        clip = generate_clip(seed, domain, height, width, num_frames, flow_gap=gap)
        offset = len(names)
        clip_frames = clip.frames
        if domain == "target" and nuisance > 0:
            clip_frames = np.stack([add_temporal_nuisance(f, seed, t, nuisance) for t, f in enumerate(clip.frames)])
        frames.add(clip_frames)
        if with_labels:
            labels.add(clip.labels)
        if exact_flow:
            true_flows.add(clip.flows[gap:].astype(np.float32))
        names += [f"clip{seed}-f{t}" for t in range(num_frames)]
        pairs += [(offset + t, offset + t - gap) for t in range(gap, num_frames)]
    frames_array = frames.finish()
    pairs_array = np.asarray(pairs, dtype=np.int64)
    dataset_id = f"synthetic-v{GENERATOR_VERSION}-{domain}" + (f"-nuisance{nuisance}" if domain == "target" else "")
    if exact_flow:
        flows = true_flows.finish()
    else:
        flows = estimate_pair_flows(
            frames_array, pairs_array, names, dataset_id, config.flow, f"flow {split}", in_memory=scratch is None
        )
    label_array = labels.finish() if with_labels else None
    return PairDataset(frames_array, pairs_array, flows, label_array, SYNTHETIC_CLASSES, names, dataset_id)
