"""CamVid in the SegNet layout (480x360 PNGs, list files `train.txt`, `val.txt`, `test.txt` of `image label` pairs).

Sequences are chosen by name and frames ordered by frame number across splits; the earlier frame of frame t is
the frame `frame_gap` places before it in its sequence's ordering (the first frame pairs with itself). Only the
current frames' labels are ever read, and none when labels are withheld (adaptation).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stpl.config import CamVidConfig, Config
from stpl.constants import IGNORE_INDEX
from stpl.data.continual import continual_schedule
from stpl.data.corruptions import corrupt
from stpl.data.pairs import PairDataset, label_size
from stpl.data.storage import RowSink, storage_directory
from stpl.data.video_common import check_label_size
from stpl.errors import StplError
from stpl.flow import estimate_pair_flows

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
# The SegNet tutorial's colours, one RGB triple per class.
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip
CAMVID_VOID = 11
LIST_FILES = ("train.txt", "val.txt", "test.txt")
# "0001TP_006690.png" (SegNet copy) or "Seq05VD_f02550.png" (full release)
_NAME = re.compile(r"^(?P<sequence>.+?)_f?(?P<frame>\d+)\.png$")


@dataclass(frozen=True)
class CamVidFrame:
    sequence: str
    frame: int
    image: Path
    label: Path | None
    suffix: str = ""  # "@<corruption>" for a frame of a continual stream (data/continual.py)

    @property
    def name(self) -> str:
        return f"{self.sequence}_{self.frame:06d}{self.suffix}"


def parse_frame_name(filename: str) -> tuple[str, int]:
    match = _NAME.match(Path(filename).name)
    if match is None:
        raise StplError(f"cannot read sequence and frame number from CamVid file name '{filename}'")
    return match["sequence"], int(match["frame"])


def read_list(root: Path, list_name: str) -> list[CamVidFrame]:
    path = root / list_name
    if not path.is_file():
        raise StplError(f"CamVid list file not found: {path}")
    frames = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2:
            raise StplError(f"{path}:{line_number}: expected 'image [label]', got '{line}'")
        sequence, frame = parse_frame_name(parts[0])
        label = root / parts[1] if len(parts) == 2 else None
        frames.append(CamVidFrame(sequence, frame, root / parts[0], label))
    return frames


def scan(root: Path) -> dict[str, list[CamVidFrame]]:
    """Every listed frame, grouped by sequence and sorted by frame number."""
    if not root.is_dir():
        raise StplError(
            f"CamVid folder not found: {root}. Get the 480x360 CamVid of the SegNet tutorial (images, labels and "
            "train/val/test.txt lists), then give its folder: --data-root PATH (stpl bench), "
            "--set data.camvid.root=PATH, or STPL_DATA=DIR holding DIR/camvid"
        )
    by_sequence: dict[str, dict[int, CamVidFrame]] = {}
    for list_name in LIST_FILES:
        if (root / list_name).is_file():
            for item in read_list(root, list_name):
                by_sequence.setdefault(item.sequence, {})[item.frame] = item
    if not by_sequence:
        raise StplError(f"no CamVid list files ({', '.join(LIST_FILES)}) in {root}")
    return {name: [frames[k] for k in sorted(frames)] for name, frames in by_sequence.items()}


def read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB [H,W,3] resized to size (area interpolation when shrinking)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise StplError(f"cannot read image {path}")
    image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(
    path: Path, size: tuple[int, int], num_classes: int = len(CAMVID_CLASSES), image: Path | None = None
) -> np.ndarray:
    """uint8 [H,W] class indices, void (id num_classes) as IGNORE_INDEX, nearest-neighbour resized. Any other
    value, or (given its frame `image`) a label of another size than its frame, stops with the file named."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise StplError(f"cannot read label {path}")
    if label.ndim != 2:
        raise StplError(f"label {path} has {label.shape[2]} channels; expected a single-channel class-index PNG")
    unknown = np.unique(label[label > num_classes])
    if unknown.size:
        shown = ", ".join(str(int(v)) for v in unknown[:8]) + (", ..." if unknown.size > 8 else "")
        raise StplError(
            f"label {path} holds values {shown} outside the class ids 0..{num_classes - 1} and void {num_classes}"
        )
    if image is not None:
        check_label_size(label, path, image)
    label = cv2.resize(label, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return np.where(label < num_classes, label, IGNORE_INDEX).astype(np.uint8)


def parse_exclusions(entries: tuple[str, ...]) -> dict[str, list[tuple[int, int]]]:
    """ "0016E5:7500-8700" -> {"0016E5": [(7500, 8700)]}."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    for entry in entries:
        match = re.fullmatch(r"(?P<sequence>[^:]+):(?P<first>\d+)-(?P<last>\d+)", entry.strip())
        if match is None:
            raise StplError(f"config key 'data.camvid.source_exclude': '{entry}' is not '<sequence>:<first>-<last>'")
        ranges.setdefault(match["sequence"], []).append((int(match["first"]), int(match["last"])))
    return ranges


def select(config: CamVidConfig, root: Path, split: str) -> list[tuple[list[CamVidFrame], set[str]]]:
    """For each sequence involved: (its frames ordered by number, usable as earlier frames; names of current frames)."""
    sequences = scan(root)
    if split == "source":
        excluded = parse_exclusions(config.source_exclude)
        out = []
        for name in config.source_sequences:
            if name not in sequences:
                raise StplError(f"source sequence '{name}' not found in {root} (have: {', '.join(sorted(sequences))})")
            # Excluded seconds are neither source frames nor earlier frames (build_camvid pairs a frame whose
            # earlier frame is excluded with itself): the source never saw them.
            stretches = excluded.get(name, [])
            usable = [f for f in sequences[name] if not any(a <= f.frame <= b for a, b in stretches)]
            out.append((sequences[name], {f.name for f in usable}))
        return out
    target = config.target_sequence
    if target not in sequences:
        raise StplError(f"target sequence '{target}' not found in {root} (have: {', '.join(sorted(sequences))})")
    frame_range = config.adapt_range if split == "adapt" else config.eval_range
    list_name = config.adapt_list if split == "adapt" else config.eval_list
    if frame_range:
        if len(frame_range) != 2:
            raise StplError(f"config key 'data.camvid.{split}_range' needs [first, last], got {list(frame_range)}")
        current = {f.name for f in sequences[target] if frame_range[0] <= f.frame <= frame_range[1]}
    else:
        current = {f.name for f in read_list(root, list_name) if f.sequence == target}
    if not current:
        raise StplError(f"no frames of target sequence '{target}' selected for split '{split}'")
    return [(sequences[target], current)]


def build_camvid(config: Config, split: str, with_labels: bool) -> PairDataset:
    camvid = config.data.camvid
    root = Path(camvid.root).expanduser()
    size = (config.data.height, config.data.width)
    gap = config.data.frame_gap
    frame_index: dict[str, int] = {}
    items: list[CamVidFrame] = []
    pairs: list[tuple[int, int]] = []

    def index_of(item: CamVidFrame) -> int:
        if item.name not in frame_index:
            frame_index[item.name] = len(items)
            items.append(item)
        return frame_index[item.name]

    corruption = camvid.target_corruption if split != "source" else "none"
    corruptions: dict[str, str] = {}  # item name -> its corruption, where it is not `corruption`
    for ordering, current_names in select(camvid, root, split):
        if split == "eval" and camvid.continual_shifts:  # the evaluation split as a continual stream
            ordered = [item for item in ordering if item.name in current_names]
            entries, stream = continual_schedule(
                ordered, camvid.continual_shifts, camvid.continual_frames, camvid.continual_rounds
            )
            shifted = [dataclasses.replace(item, suffix=f"@{shift}") for item, shift in entries]
            corruptions.update({item.name: shift for item, (_, shift) in zip(shifted, entries, strict=True)})
            pairs += [(index_of(shifted[current]), index_of(shifted[earlier])) for current, earlier in stream]
            continue
        for position, item in enumerate(ordering):
            if item.name in current_names:
                earlier = ordering[max(position - gap, 0)]  # the first frame pairs with itself (zero motion)
                if earlier.name not in current_names and split == "source":
                    earlier = item  # an excluded second stays unseen
                pairs.append((index_of(item), index_of(earlier)))
    if not pairs:
        raise StplError(
            f"no frames selected for split '{split}' (check data.camvid.source_sequences and source_exclude)"
        )
    if config.flow.method != "dis":
        raise StplError(f"flow.method '{config.flow.method}' is not available for camvid (use dis)")
    scratch = storage_directory(config.data)
    frames_sink = RowSink(scratch)
    for item in items:
        frame = read_image(item.image, size)
        # a fixed function of each frame, so every run and the flow cache see the same pixels
        frame = corrupt(frame, item.name, corruptions.get(item.name, corruption))
        frames_sink.add(frame[None])
    frames = frames_sink.finish()
    labels = None
    if with_labels:
        size_of_labels = label_size(config, split)
        currents = {current for current, _ in pairs}
        labels_sink = RowSink(scratch)
        for index, item in enumerate(items):
            if index not in currents:  # an earlier frame only: void
                labels_sink.add(np.full((1, *size_of_labels), IGNORE_INDEX, dtype=np.uint8))
                continue
            if item.label is None:
                raise StplError(f"frame {item.image} has no label in the list files")
            labels_sink.add(read_label(item.label, size_of_labels, image=item.image)[None])
        labels = labels_sink.finish()
    pairs_array = np.asarray(pairs, dtype=np.int64)
    names = [item.name for item in items]
    dataset_id = "camvid" if corruption == "none" else f"camvid-{corruption}"
    if corruptions:  # names carry their shift: "<frame>@<corruption>"
        dataset_id = "camvid-continual"
    flows = estimate_pair_flows(
        frames, pairs_array, names, dataset_id, config.flow, f"flow {split}", in_memory=scratch is None
    )
    return PairDataset(frames, pairs_array, flows, labels, CAMVID_CLASSES, names, dataset_id)
