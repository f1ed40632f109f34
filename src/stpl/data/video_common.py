"""What the video data sets (cityscapes_seq, viper, synthia_seq) share: reading frames, label PNGs and the peers'
flow files, and turning a list of (current, earlier) frame pairs into a `PairDataset`.

Frames are uint8 RGB resized to data.height x data.width (area interpolation), labels uint8 train ids resized with
nearest neighbour (IGNORE_INDEX = void); only current frames' labels are read, and none when labels are withheld.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch

from stpl.config import Config
from stpl.constants import IGNORE_INDEX
from stpl.data.pairs import PairDataset, label_size
from stpl.data.storage import RowSink, storage_directory
from stpl.errors import StplError
from stpl.flow import estimate_pair_flows, read_flow_file
from stpl.flow.geometry import resize_flow

T = TypeVar("T")
R = TypeVar("R")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class VideoFrame:
    name: str  # unique within the data set: flow-cache keys and logs
    image: Path
    label: Path | None = None


@dataclass(frozen=True)
class FramePair:
    current: VideoFrame
    earlier: VideoFrame
    flow_file: Path | None = None  # the peers' flow file for flow.method = files


def require_dir(path: Path, what: str, key: str) -> Path:
    if not path.is_dir():
        raise StplError(f"{what} folder not found: {path} (set {key})")
    return path


def crop_bottom(array: np.ndarray, fraction: float) -> np.ndarray:
    """Drop the bottom `fraction` of the rows (SYNTHIA-Seq: the peers cut the bottom 120 of 640 rows)."""
    if fraction <= 0.0:
        return array
    return array[: max(1, round(array.shape[0] * (1.0 - fraction)))]


def read_rgb(path: Path, size: tuple[int, int], bottom_fraction: float = 0.0) -> np.ndarray:
    """uint8 RGB [H,W,3] at `size` (area interpolation)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise StplError(f"cannot read image {path}")
    image = crop_bottom(image, bottom_fraction)
    image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _png_palette(data: bytes) -> np.ndarray | None:
    """The PLTE entries [N,3] (RGB) of an indexed-colour PNG, else None. Only the chunk headers are parsed."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    position, colour_type = len(_PNG_SIGNATURE), None
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            colour_type = body[9]
        elif kind == b"PLTE":
            return np.frombuffer(body, np.uint8).reshape(-1, 3) if colour_type == 3 else None
        elif kind in (b"IDAT", b"IEND"):
            return None
        position += 12 + length  # length, type, body, CRC
    return None


def _palette_indices(path: Path, bgr: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """OpenCV expands indexed PNGs to colours; map each colour back to its (first) palette index."""
    keys = (palette[:, 0].astype(np.int64) << 16) | (palette[:, 1].astype(np.int64) << 8) | palette[:, 2]
    unique_keys, first_index = np.unique(keys, return_index=True)
    pixels = (bgr[..., 2].astype(np.int64) << 16) | (bgr[..., 1].astype(np.int64) << 8) | bgr[..., 0]
    position = np.clip(np.searchsorted(unique_keys, pixels), 0, len(unique_keys) - 1)
    if not np.array_equal(unique_keys[position], pixels):
        raise StplError(f"label {path} has colours outside its own palette")
    return first_index[position].astype(np.uint16)


def read_label_png(path: Path) -> np.ndarray:
    """A label PNG as stored: class indices [H,W] for grey or indexed-colour PNGs, else all channels [H,W,C]."""
    try:
        data = path.read_bytes()
    except OSError:
        raise StplError(f"cannot read label {path}") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise StplError(f"cannot read label {path}")
    palette = _png_palette(data)
    if palette is not None and image.ndim == 3:
        return _palette_indices(path, image[..., :3], palette)
    return image


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file: from a PNG's header, else by decoding the image."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
    except OSError:
        raise StplError(f"cannot read image {path}") from None
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise StplError(f"cannot read image {path}")
    return image.shape[0], image.shape[1]


def check_label_size(label: np.ndarray, label_path: Path, image_path: Path, bottom_fraction: float = 0.0) -> None:
    """A label must cover its frame pixel for pixel (after the same bottom crop); resizing one would hide a
    mismatched pair."""
    height, width = image_size(image_path)
    if bottom_fraction > 0.0:
        height = max(1, round(height * (1.0 - bottom_fraction)))
    if tuple(label.shape[:2]) != (height, width):
        raise StplError(
            f"label {label_path} is {label.shape[1]}x{label.shape[0]} but its frame {image_path} is "
            f"{width}x{height} (width x height)"
        )


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(label, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def read_flow(path: Path, size: tuple[int, int], key: str) -> np.ndarray:
    """A peers' flow file (t -> t-k, int16 x10, H x W x 2) resized to `size`, displacements scaled per axis."""
    if not path.is_file():
        raise StplError(f"flow file not found: {path} (flow.method=files reads the peers' flow from {key})")
    flow = torch.from_numpy(read_flow_file(path)).permute(2, 0, 1).unsqueeze(0)
    return resize_flow(flow, size)[0].permute(1, 2, 0).contiguous().numpy()


def flow_folder(config: Config, value: str, key: str) -> Path | None:
    """The folder of the peers' flow files when flow.method = files (checked before any frame is read)."""
    if config.flow.method != "files":
        return None
    if not value:
        raise StplError(f"flow.method=files needs the folder of the peers' flow files in {key}")
    return require_dir(Path(value).expanduser(), "flow", key)


def bounded_map(pool: Executor, function: Callable[[T], R], items: Iterable[T], ahead: int) -> Iterator[R]:
    """`pool.map` in order with at most `ahead` tasks submitted and not yet consumed, so that a slow read does
    not let finished frames pile up in memory (data.storage=disk promises memory bounded by the batch)."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def build_pair_dataset(
    config: Config,
    pairs: Sequence[FramePair],
    read_label: Callable[[Path], np.ndarray],
    class_names: Sequence[str],
    dataset_id: str,
    with_labels: bool,
    split: str,
    flow_key: str = "",
    bottom_fraction: float = 0.0,
) -> PairDataset:
    """Read every frame once (threads: OpenCV releases the GIL) and the current frames' labels when allowed.

    read_label: path -> uint8 train ids at the file's resolution (cropped like the frames).
    flow_key: the config key of the flow folder, for messages (flow.method = files).
    Missing labels and flow files are reported before any frame is read.
    """
    if not pairs:
        raise StplError(f"no frame pairs found for split '{split}' of data set '{dataset_id}'")
    method = config.flow.method
    if method not in ("dis", "files"):
        raise StplError(f"flow.method '{method}' is not available for data set '{dataset_id}' (use dis or files)")
    if method == "files":
        for pair in pairs:
            if pair.flow_file is None or not pair.flow_file.is_file():
                raise StplError(f"flow file not found: {pair.flow_file} (flow.method=files reads {flow_key})")
    if with_labels:
        for pair in pairs:
            label = pair.current.label
            if label is None or not label.is_file():
                raise StplError(f"label not found for frame {pair.current.image}: {label}")
    size = (config.data.height, config.data.width)
    frame_index: dict[str, int] = {}
    frames_in_order: list[VideoFrame] = []
    index_pairs = []
    for pair in pairs:
        for frame in (pair.current, pair.earlier):
            if frame.name not in frame_index:
                frame_index[frame.name] = len(frames_in_order)
                frames_in_order.append(frame)
            elif frame.label is not None:  # a frame met first as an earlier frame keeps its label path
                frames_in_order[frame_index[frame.name]] = frame
        index_pairs.append((frame_index[pair.current.name], frame_index[pair.earlier.name]))
    scratch = storage_directory(config.data)
    with ThreadPoolExecutor(max_workers=max(1, config.data.read_workers)) as pool:
        frames_sink = RowSink(scratch)
        ahead = 4 * max(1, config.data.read_workers)
        for frame in bounded_map(pool, lambda f: read_rgb(f.image, size, bottom_fraction), frames_in_order, ahead):
            frames_sink.add(frame[None])
        frames = frames_sink.finish()
        labels = None
        if with_labels:
            size_of_labels = label_size(config, split)
            currents = {c for c, _ in index_pairs}

            def read_checked(index: int) -> np.ndarray:
                frame = frames_in_order[index]
                if index not in currents:  # an earlier frame only: void
                    return np.full(size_of_labels, IGNORE_INDEX, dtype=np.uint8)
                label = read_label(frame.label)
                check_label_size(label, frame.label, frame.image, bottom_fraction)
                return resize_label(label, size_of_labels)

            labels_sink = RowSink(scratch)
            for label in bounded_map(pool, read_checked, range(len(frames_in_order)), ahead):
                labels_sink.add(label[None])
            labels = labels_sink.finish()
    pairs_array = np.asarray(index_pairs, dtype=np.int64)
    names = [f.name for f in frames_in_order]
    if method == "files":
        flows_sink = RowSink(scratch)
        for pair in pairs:
            flows_sink.add(read_flow(pair.flow_file, size, flow_key).astype(np.float32)[None])
        flows = flows_sink.finish()
    else:
        flows = estimate_pair_flows(
            frames, pairs_array, names, dataset_id, config.flow, f"flow {split}", in_memory=scratch is None
        )
    return PairDataset(frames, pairs_array, flows, labels, class_names, names, dataset_id)
