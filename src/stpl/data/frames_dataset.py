"""`data.dataset: frames`: one's own unlabelled video as the adaptation split. Frames are read in order
(data/frames.py), resized to the model's size, and paired with the frame `data.frame_gap` steps earlier (the
first frames with themselves, as in every data set); flow is DIS through the cache. There are no labels: a split
that asks for them (evaluation, source training, the oracle) stops with a message."""

from __future__ import annotations

import cv2
import numpy as np

from stpl.config import Config
from stpl.data.frames import open_frames
from stpl.data.pairs import PairDataset
from stpl.data.storage import RowSink, storage_directory
from stpl.errors import StplError
from stpl.flow import estimate_pair_flows


def frames_classes(config: Config) -> tuple[str, ...]:
    classes = config.data.frames.classes
    if not classes:
        raise StplError(
            "data set 'frames' has no class names of its own: they come from the source checkpoint (stpl adapt "
            "fills them in), or set data.frames.classes"
        )
    return tuple(classes)


def build_frames(config: Config, split: str, with_labels: bool) -> PairDataset:
    settings = config.data.frames
    if split != "adapt" or with_labels:
        raise StplError(
            f"data set 'frames' is unlabelled video: it can be adapted on, not used as split '{split}'"
            + (" with labels (no evaluation without labels; `stpl predict` writes the masks)" if with_labels else "")
        )
    if not settings.path:
        raise StplError("data set 'frames' needs data.frames.path: a folder of images or a video file")
    end = None if settings.end < 0 else settings.end
    source = open_frames(settings.path, settings.stride, settings.start, end)
    size = (config.data.height, config.data.width)
    scratch = storage_directory(config.data)
    names, frames = [], RowSink(scratch)
    for name, frame in source:
        names.append(name)
        frames.add(cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)[None])
    if len(names) < 2:
        raise StplError(f"data set 'frames' needs at least 2 frames, {len(names)} selected from {settings.path}")
    gap = config.data.frame_gap
    pairs = np.asarray([(t, max(t - gap, 0)) for t in range(len(names))], dtype=np.int64)
    frames_array = frames.finish()
    dataset_id = "frames"  # the cache keys also hold each frame's pixel digest, so any two videos stay apart
    flows = estimate_pair_flows(
        frames_array, pairs, names, dataset_id, config.flow, f"flow {split}", in_memory=scratch is None
    )
    return PairDataset(frames_array, pairs, flows, None, frames_classes(config), names, dataset_id)
