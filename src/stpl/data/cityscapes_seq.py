"""Cityscapes-Seq, the target of VIPER -> Cityscapes-Seq and SYNTHIA-Seq -> Cityscapes-Seq.

Layout (the official `leftImg8bit_sequence_trainvaltest` and `gtFine_trainvaltest` packages under one root):
    leftImg8bit_sequence/{train,val}/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png   (17 Hz, 30-frame snippets)
    gtFine/{train,val}/<city>/<city>_<seq:06d>_<frame:06d>_gtFine_labelIds.png              (raw Cityscapes ids)
The labelled frame of a snippet is its 20th (e.g. frames 000000..000029 -> 000019; frankfurt 000275..000304 ->
000294): 2975 train and 500 val frames. Splits: "adapt" and "source" = train, "eval" = val.

What the peers do (Dayan-Guan/DA-VSN `davsn/dataset/CityscapesSeq.py`, xing0047/TPS `tps/dataset/CityscapesSeq.py`,
list files such as TPS `tps/dataset/CityscapesSeq_list/val_1.txt`): the list names the labelled frames
(`munster/munster_000055_000019_leftImg8bit.png`); the current frame is the labelled frame t and the earlier frame is
t-1 by frame number (TPS: also t-interval), the name's 6-digit frame number replaced. Flow (DA-VSN / TPS
`eval_video_UDA.py`, `train_video_UDA.py`) is read from one flat folder per split as
`<city>_<seq>_<t:06d>_<t-k:06d>_int16_x10.npy`, computed at 1024x512 ("scale512").

Assumption (marked): without a list file, the labelled frames are derived from the sequence folder, splitting each
(city, seq) into runs of consecutive frame numbers and each run into 30-frame snippets. A run that is not a whole
number of snippets (an incomplete download, or snippets that overlap) is an error that asks for a list file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from stpl.config import CityscapesSeqConfig, Config
from stpl.data.class_maps import PROTOCOLS, map_to_train_ids
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

SNIPPET_LENGTH = 30
LABELLED_POSITION = 19  # the 20th frame of a snippet
SPLIT_FOLDERS = {"source": "train", "adapt": "train", "eval": "val"}
_NAME = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit\.png$")

FrameId = tuple[str, str, int]  # (city, seq, frame)


def cityscapes_seq_classes(config: Config) -> tuple[str, ...]:
    return PROTOCOLS[config.data.cityscapes_seq.protocol].classes


def parse_name(filename: str) -> FrameId:
    match = _NAME.match(Path(filename).name)
    if match is None:
        raise StplError(
            f"not a Cityscapes sequence frame name: '{filename}' (expected <city>_<seq>_<frame>_leftImg8bit.png)"
        )
    return match["city"], match["seq"], int(match["frame"])


def snippet_labelled_frames(frames: list[int], where: str, list_key: str) -> list[int]:
    """The 20th frame of each 30-frame snippet among the sorted frame numbers of one (city, seq)."""
    labelled: list[int] = []
    start = 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or frames[i] != frames[i - 1] + 1:  # end of a run of consecutive frames
            run = frames[start:i]
            if len(run) % SNIPPET_LENGTH:
                raise StplError(
                    f"{where}: {len(run)} consecutive frames from {run[0]:06d} are not whole {SNIPPET_LENGTH}-frame "
                    f"snippets; name the labelled frames in {list_key}"
                )
            labelled += run[LABELLED_POSITION::SNIPPET_LENGTH]
            start = i
    return labelled


def labelled_frames(cfg: CityscapesSeqConfig, sequence_dir: Path, folder: str) -> list[FrameId]:
    list_key = f"data.cityscapes_seq.{folder}_list"
    list_file = cfg.train_list if folder == "train" else cfg.val_list
    if list_file:
        path = Path(list_file).expanduser()
        if not path.is_file():
            raise StplError(f"Cityscapes-Seq list file not found: {path} (set {list_key})")
        return [parse_name(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]
    by_sequence: dict[tuple[str, str], list[int]] = {}
    for image in sequence_dir.glob("*/*_leftImg8bit.png"):
        city, seq, frame = parse_name(image.name)
        by_sequence.setdefault((city, seq), []).append(frame)
    if not by_sequence:
        raise StplError(f"no *_leftImg8bit.png frames in {sequence_dir}/<city>/")
    out: list[FrameId] = []
    for (city, seq), frames in sorted(by_sequence.items()):
        labelled = snippet_labelled_frames(sorted(frames), f"{sequence_dir / city} {city}_{seq}", list_key)
        out += [(city, seq, frame) for frame in labelled]
    return out


def build_cityscapes_seq(config: Config, split: str, with_labels: bool) -> PairDataset:
    cfg = config.data.cityscapes_seq
    folder = SPLIT_FOLDERS[split]
    root = require_dir(Path(cfg.root).expanduser(), "Cityscapes-Seq", "data.cityscapes_seq.root")
    sequence_dir = require_dir(
        root / "leftImg8bit_sequence" / folder, "Cityscapes-Seq frames", "data.cityscapes_seq.root"
    )
    label_dir = root / "gtFine" / folder
    if with_labels:
        require_dir(label_dir, "Cityscapes gtFine", "data.cityscapes_seq.root")
    flow_key = f"data.cityscapes_seq.flow_dir_{folder}"
    flows = flow_folder(config, cfg.flow_dir_train if folder == "train" else cfg.flow_dir_val, flow_key)
    gap = config.data.frame_gap

    def frame(city: str, seq: str, number: int, labelled: bool) -> VideoFrame:
        stem = f"{city}_{seq}_{number:06d}"
        label = label_dir / city / f"{stem}_gtFine_labelIds.png" if labelled else None
        return VideoFrame(f"{folder}/{stem}", sequence_dir / city / f"{stem}_leftImg8bit.png", label)

    pairs = []
    for city, seq, t in labelled_frames(cfg, sequence_dir, folder):
        current, earlier = frame(city, seq, t, True), frame(city, seq, t - gap, False)
        for image in (current.image, earlier.image):
            if not image.is_file():
                raise StplError(f"Cityscapes-Seq frame not found: {image}")
        flow_file = None if flows is None else flows / f"{city}_{seq}_{t:06d}_{t - gap:06d}_int16_x10.npy"
        pairs.append(FramePair(current, earlier, flow_file))
    table = PROTOCOLS[cfg.protocol].lookup("cityscapes_seq")

    def read_label(path: Path) -> np.ndarray:
        raw = read_label_png(path)
        if raw.ndim != 2:
            raise StplError(f"label {path} has {raw.shape[2]} channels; expected a *_gtFine_labelIds.png")
        return map_to_train_ids(raw, table)

    return build_pair_dataset(
        config, pairs, read_label, cityscapes_seq_classes(config), "cityscapes_seq", with_labels, split, flow_key
    )
