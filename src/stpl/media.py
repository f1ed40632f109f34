"""The pictures a prediction leaves for a person to look at: each frame blended with its class colours, the legend
that names the colours, overlay.mp4, and PNG files written whole (atomic.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stpl.atomic import atomic_write
from stpl.errors import StplError


def colour_overlay(
    frame: np.ndarray, classes: np.ndarray, palette: list[tuple[int, int, int]], alpha: float = 0.5
) -> np.ndarray:
    """The RGB frame blended with the colour of each pixel's class, at the frame's own size."""
    colours = np.asarray(palette, dtype=np.uint8)[classes]
    return (frame.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).astype(np.uint8)


def legend_picture(class_names: list[str], palette: list[tuple[int, int, int]]) -> np.ndarray:
    """Every class's colour and name, one row each (RGB), for legend.png beside the overlays."""
    row = 20
    picture = np.full((row * len(class_names) + 8, 170, 3), 255, np.uint8)
    for slot, name in enumerate(class_names):
        top = 4 + slot * row
        cv2.rectangle(picture, (6, top), (22, top + 14), tuple(int(c) for c in palette[slot]), -1)
        cv2.putText(picture, name[:18], (30, top + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return picture


MIN_VIDEO_SIDE = 16


class OverlayVideo:
    """overlay.mp4: every picture fitted into the first one's size (white borders, aspect kept), because a video
    writer silently drops pictures of another size; the overlay PNGs keep each frame's own size."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self.size: tuple[int, int] | None = None  # (height, width) of every picture in the video
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None

    def add(self, picture: np.ndarray) -> None:
        """Append an RGB picture."""
        if self._writer is None:
            # the first picture's size, at least MIN_VIDEO_SIDE: the encoder refuses tiny frames (a 1x1 input still
            # gets a video, scaled up)
            height, width = (max(MIN_VIDEO_SIDE, side) for side in picture.shape[:2])
            self.size = (height, width)
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (self.size[1], self.size[0]))
            if not self._writer.isOpened():
                raise StplError(f"cannot write {self.path}: OpenCV could not open an mp4v video writer")
        self._writer.write(cv2.cvtColor(fit_picture(picture, self.size), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def check(self) -> None:
        """The written file holds every picture (a writer drops what it cannot write without a word)."""
        capture = cv2.VideoCapture(str(self.path))
        held = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
        if held != self.frames:
            raise StplError(f"cannot write {self.path}: it holds {held} of the {self.frames} frames written")


def fit_picture(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`picture` scaled to fit (height, width) `size` with its aspect kept, centred on white."""
    height, width = size
    if picture.shape[:2] == (height, width):
        return picture
    ratio = min(height / picture.shape[0], width / picture.shape[1])
    scaled_size = (max(1, round(picture.shape[1] * ratio)), max(1, round(picture.shape[0] * ratio)))
    scaled = cv2.resize(picture, scaled_size, interpolation=cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR)
    canvas = np.full((height, width, 3), 255, np.uint8)
    top, left = (height - scaled.shape[0]) // 2, (width - scaled.shape[1]) // 2
    canvas[top : top + scaled.shape[0], left : left + scaled.shape[1]] = scaled
    return canvas


def write_png(path: Path, image: np.ndarray) -> None:
    def write(temporary: str) -> None:
        ok, data = cv2.imencode(".png", image)
        if not ok:
            raise StplError(f"cannot encode {path}")
        Path(temporary).write_bytes(data.tobytes())

    atomic_write(path, write)
