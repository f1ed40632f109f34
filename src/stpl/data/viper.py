"""VIPER (Playing for Benchmarks), the source of VIPER -> Cityscapes-Seq (15 classes, `viper15`).

Layout (README of Dayan-Guan/DA-VSN; xing0047/TPS `tps/dataset/Viper.py` reads the same folders):
    train/img/<seq>/<seq>_<frame:05d>.jpg   every frame, sequences 001..077
    train/cls/<seq>/<seq>_<frame:05d>.png   every 10th frame (*0), indexed-colour PNGs whose palette index is the
                                            VIPER class id (the peers read them with PIL without conversion)
The peers' list (DA-VSN `davsn/dataset/Viper_list/train.txt`: `001/001_00010.jpg`, ...) holds the labelled frames
that have a predecessor: frame 00000 of each sequence is left out. The earlier frame is t-1 by frame number; the ego
vehicle (the car component that touches the bottom centre pixel) becomes unlabelled before the id mapping; labels
map through `class_maps.VIPER15`. Flow (TPS `train_video_UDA.py`) comes from one flat folder, named by appending
the earlier frame number to the file stem without a separator: `001_00010.jpg` -> `001_0001000009_int16_x10.npy`.

Here the labelled frames are the class PNGs found under `data.viper.labels` whose frame t - k is not negative;
OpenCV expands indexed PNGs to colours, so the palette index is recovered from the file's own PLTE chunk.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from stpl.config import Config
from stpl.data.class_maps import VIPER15, VIPER_CAR, VIPER_UNLABELED, map_to_train_ids
from stpl.data.pairs import PairDataset
from stpl.data.video_common import (
    FramePair,
    VideoFrame,
    build_pair_dataset,
    flow_folder,
    read_label_png,
    require_dir,
)
from stpl.errors import StplError

_LABEL_NAME = re.compile(r"^(?P<seq>\d+)_(?P<frame>\d{5})\.png$")


def viper_classes(config: Config) -> tuple[str, ...]:
    return VIPER15.classes


def void_ego_vehicle(raw: np.ndarray) -> np.ndarray:
    """Set the car component under the bottom centre pixel to unlabelled (the camera car's bonnet)."""
    _, components = cv2.connectedComponents((raw == VIPER_CAR).astype(np.uint8), connectivity=8)
    ego = components[-1, raw.shape[1] // 2]
    if ego > 0:
        raw = raw.copy()
        raw[components == ego] = VIPER_UNLABELED
    return raw


def build_viper(config: Config, split: str, with_labels: bool) -> PairDataset:
    if split != "source":
        raise StplError(
            f"VIPER provides only the source split, not '{split}': set data.source_dataset=viper with "
            "data.dataset=cityscapes_seq"
        )
    cfg = config.data.viper
    root = require_dir(Path(cfg.root).expanduser(), "VIPER", "data.viper.root")
    images = require_dir(root / cfg.images, "VIPER images", "data.viper.images")
    labels = require_dir(root / cfg.labels, "VIPER class labels", "data.viper.labels")
    flows = flow_folder(config, cfg.flow_dir, "data.viper.flow_dir")
    gap = config.data.frame_gap
    labelled = []
    for path in labels.glob("*/*.png"):
        match = _LABEL_NAME.match(path.name)
        if match is None or path.parent.name != match["seq"]:
            continue  # not a <seq>/<seq>_<frame>.png class map
        if int(match["frame"]) - gap >= 0:  # frame 00000 has no predecessor (the peers' lists start at 00010)
            labelled.append((match["seq"], int(match["frame"])))
    if not labelled:
        raise StplError(f"no VIPER class maps <seq>/<seq>_<frame:05d>.png under {labels}")
    pairs = []
    for seq, t in sorted(labelled)[:: cfg.subsample]:
        current = VideoFrame(f"{seq}_{t:05d}", images / seq / f"{seq}_{t:05d}.jpg", labels / seq / f"{seq}_{t:05d}.png")
        earlier = VideoFrame(f"{seq}_{t - gap:05d}", images / seq / f"{seq}_{t - gap:05d}.jpg")
        for image in (current.image, earlier.image):
            if not image.is_file():
                raise StplError(f"VIPER frame not found: {image}")
        flow_file = None if flows is None else flows / f"{seq}_{t:05d}{t - gap:05d}_int16_x10.npy"
        pairs.append(FramePair(current, earlier, flow_file))
    table = VIPER15.lookup("viper")

    def read_label(path: Path) -> np.ndarray:
        raw = read_label_png(path)
        if raw.ndim != 2:
            raise StplError(f"label {path} is an RGB image; expected VIPER's indexed-colour (or class-id) PNG")
        if cfg.ignore_ego_vehicle:
            raw = void_ego_vehicle(raw)
        return map_to_train_ids(raw, table)

    return build_pair_dataset(
        config, pairs, read_label, VIPER15.classes, "viper", with_labels, split, "data.viper.flow_dir"
    )
