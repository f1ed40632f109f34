"""SYNTHIA-SEQS-04-DAWN, the source of SYNTHIA-Seq -> Cityscapes-Seq (12 classes trained, 11 reported: `synthia12`).

The package's README: 5 FPS video, RGB/ 1280x760 images, GT/LABELS/ PNGs "in two channels: the first channel
contains the class of that pixel, the second the instance id" (16-bit; the first channel is red, which OpenCV
returns last), class ids 0 void .. 15 traffic light (see `class_maps.SYNTHIA12`).

What the peers do (Dayan-Guan/DA-VSN `davsn/dataset/SynthiaSeq.py`, `SynthiaSeq_list/train.txt`,
`scripts/configs/davsn_syn2city.yml`; xing0047/TPS `tps/dataset/SynthiaSeq.py`): frames 000001..000849 are the
labelled current frames, the earlier frame is t-1; images and labels come from `<root>/rgb/` and `<root>/label/`
(a flattened copy of one camera), are resized to 1280x640 and lose their bottom 120 rows; the label is channel 0 of
the 16-bit PNG. Flow (TPS `train_video_UDA.py`) is `<t:06d>_int16_x10.npy` in one flat folder (t -> t-1).

Assumptions (marked): the camera folder default `Stereo_Left/Omni_F` is the usual choice for the official layout
(the peers' rgb/ copy does not say which camera it holds; point data.synthia_seq.images/labels at it instead); the
bottom crop is applied as a fraction of the height (120/640) before resizing; the peers' flow files are taken to
cover the cropped frame, as the peers fed them with the cropped frames.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from stpl.config import Config
from stpl.data.class_maps import SYNTHIA12, map_to_train_ids
from stpl.data.pairs import PairDataset
from stpl.data.video_common import (
    FramePair,
    VideoFrame,
    build_pair_dataset,
    crop_bottom,
    flow_folder,
    read_label_png,
    require_dir,
)
from stpl.errors import StplError

_NAME = re.compile(r"^(?P<frame>\d{6})\.png$")
RED = 2  # OpenCV channel order is BGR; SYNTHIA's class id is in the first (red) channel


def synthia_seq_classes(config: Config) -> tuple[str, ...]:
    return SYNTHIA12.classes


def class_ids(raw: np.ndarray) -> np.ndarray:
    """The class-id plane of a SYNTHIA label as read by OpenCV (a single-channel copy is taken as is)."""
    return raw if raw.ndim == 2 else raw[..., RED]


def build_synthia_seq(config: Config, split: str, with_labels: bool) -> PairDataset:
    if split != "source":
        raise StplError(
            f"SYNTHIA-Seq provides only the source split, not '{split}': set data.source_dataset=synthia_seq with "
            "data.dataset=cityscapes_seq (and data.cityscapes_seq.protocol=synthia12)"
        )
    cfg = config.data.synthia_seq
    gap = config.data.frame_gap
    root = require_dir(Path(cfg.root).expanduser(), "SYNTHIA-Seq", "data.synthia_seq.root")
    images = require_dir(root / cfg.images, "SYNTHIA-Seq images", "data.synthia_seq.images")
    labels = require_dir(root / cfg.labels, "SYNTHIA-Seq labels", "data.synthia_seq.labels")
    flows = flow_folder(config, cfg.flow_dir, "data.synthia_seq.flow_dir")
    if flows is not None and gap != 1:
        raise StplError(
            "the peers' SYNTHIA-Seq flow files only cover t -> t-1: flow.method=files needs data.frame_gap=1"
        )
    numbers = sorted(int(m["frame"]) for p in labels.glob("*.png") if (m := _NAME.match(p.name)))
    if not numbers:
        raise StplError(f"no SYNTHIA-Seq label PNGs <frame:06d>.png in {labels}")
    pairs = []
    for t in (n for n in numbers if n - gap >= 0):  # frame 000000 has no predecessor
        current = VideoFrame(f"{t:06d}", images / f"{t:06d}.png", labels / f"{t:06d}.png")
        earlier = VideoFrame(f"{t - gap:06d}", images / f"{t - gap:06d}.png")
        for image in (current.image, earlier.image):
            if not image.is_file():
                raise StplError(f"SYNTHIA-Seq frame not found: {image}")
        pairs.append(FramePair(current, earlier, None if flows is None else flows / f"{t:06d}_int16_x10.npy"))
    table = SYNTHIA12.lookup("synthia_seq")

    def read_label(path: Path) -> np.ndarray:
        return map_to_train_ids(crop_bottom(class_ids(read_label_png(path)), cfg.crop_bottom), table)

    return build_pair_dataset(
        config,
        pairs,
        read_label,
        SYNTHIA12.classes,
        f"synthia_seq-crop{cfg.crop_bottom:g}",  # the crop changes the frames, so it is part of the flow-cache key
        with_labels,
        split,
        "data.synthia_seq.flow_dir",
        bottom_fraction=cfg.crop_bottom,
    )
