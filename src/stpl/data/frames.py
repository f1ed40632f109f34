"""Unlabelled video of one's own: a folder of images (sorted by name) or a video file, read frame by frame.

Frames come out as uint8 RGB at their own size; resizing to the model's size is the caller's (the predictor keeps
the original size for its masks and overlays).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stpl.errors import StplError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DEFAULT_FOLDER_FPS = 10.0  # a folder of images says nothing of its frame rate


@dataclass(frozen=True)
class FrameSource:
    """Where the frames come from and which of them are read: every `stride`-th frame from `start` (inclusive)
    to `end` (exclusive, None = to the last)."""

    path: Path
    stride: int = 1
    start: int = 0
    end: int | None = None

    @property
    def is_video(self) -> bool:
        return self.path.is_file()

    def image_files(self) -> list[Path]:
        files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return files[self.start : self.end : self.stride]

    def fps(self) -> float:
        """Frames per second of what is read (the video's rate divided by the stride)."""
        if not self.is_video:
            return DEFAULT_FOLDER_FPS / self.stride
        capture = cv2.VideoCapture(str(self.path))
        rate = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FOLDER_FPS
        capture.release()
        return rate / self.stride

    def count(self) -> int:
        """How many frames will be read (for a video, from its header: may be approximate)."""
        if not self.is_video:
            return len(self.image_files())
        capture = cv2.VideoCapture(str(self.path))
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        return len(range(self.start, total if self.end is None else min(self.end, total), self.stride))

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        """(name, uint8 RGB [H,W,3]) for each frame read, in order."""
        if not self.is_video:
            for file in self.image_files():
                image = cv2.imread(str(file), cv2.IMREAD_COLOR)
                if image is None:
                    raise StplError(f"cannot read image {file}")
                yield file.stem, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            return
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while self.end is None or index < self.end:
                ok, image = capture.read()
                if not ok:
                    break
                if index >= self.start and (index - self.start) % self.stride == 0:
                    yield f"frame{index:06d}", cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
                index += 1
        finally:
            capture.release()


def open_frames(path: str | Path, stride: int = 1, start: int = 0, end: int | None = None) -> FrameSource:
    """A folder of images or a video file; a clear error for anything else or an empty selection."""
    path = Path(path).expanduser()
    if stride < 1 or start < 0 or (end is not None and end <= start):
        raise StplError(f"frame selection needs stride >= 1 and 0 <= start < end, got {stride}, {start}, {end}")
    if not path.exists():
        raise StplError(f"input not found: {path}")
    source = FrameSource(path, stride, start, end)
    if path.is_dir():
        if not source.image_files():
            raise StplError(f"no images ({', '.join(IMAGE_SUFFIXES)}) selected in {path}")
        return source
    capture = cv2.VideoCapture(str(path))
    readable = capture.isOpened() and capture.read()[0]
    capture.release()
    if not readable:
        raise StplError(f"cannot read {path} as a video (OpenCV could not decode a frame)")
    return source
