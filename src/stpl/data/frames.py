"""Unlabelled video of one's own: a folder of images (sorted by name) or a video file, read frame by frame.

Frames come out as uint8 RGB at their own size; resizing to the model's size is the caller's (the predictor keeps
the original size for its masks and overlays).
"""

from __future__ import annotations

import os
import sys
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

    def all_image_files(self) -> list[Path]:
        """Every image of the folder, sorted by name (before the selection)."""
        try:
            return sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        except OSError as err:
            raise StplError(f"cannot read {self.path}: {err.strerror or err}") from None

    def image_files(self) -> list[Path]:
        return self.all_image_files()[self.start : self.end : self.stride]

    def fps(self) -> float:
        """Frames per second of what is read (the video's rate divided by the stride)."""
        if not self.is_video:
            return DEFAULT_FOLDER_FPS / self.stride
        capture = cv2.VideoCapture(str(self.path))
        rate = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FOLDER_FPS
        capture.release()
        return rate / self.stride

    def total(self) -> int:
        """Frames in the folder or video before the selection (for a video, from its header: may be approximate,
        0 when the header does not say)."""
        if not self.is_video:
            return len(self.all_image_files())
        capture = cv2.VideoCapture(str(self.path))
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        return max(total, 0)

    def count(self) -> int:
        """How many frames will be read (for a video, from its header: may be approximate)."""
        total = self.total()
        return len(range(self.start, total if self.end is None else min(self.end, total), self.stride))

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        """(name, uint8 RGB [H,W,3]) for each frame read, in order."""
        if not self.is_video:
            for file in self.image_files():
                _check_readable(file)  # the OS's cause in one line, before OpenCV warns without one
                image = cv2.imread(str(file), cv2.IMREAD_COLOR)
                if image is None:
                    raise StplError(f"cannot read image {file}: not an image OpenCV can decode")
                yield file.stem, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            return
        capture = cv2.VideoCapture(str(self.path))
        announced = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
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
        if index < min(announced, self.end if self.end is not None else announced):
            print(f"[input] {self.path}: {index} frames could be decoded of the {announced} its header announces; "
                  "the file may be truncated or damaged", file=sys.stderr)  # fmt: skip


def _check_readable(path: Path) -> None:
    """One line naming `path` and the OS's cause when it is missing or cannot be read (OpenCV only says no, and
    Path.exists() calls a folder one may not enter missing)."""
    try:
        if path.is_dir():
            os.listdir(path)
        else:
            with open(path, "rb") as stream:
                stream.read(1)
    except FileNotFoundError:
        raise StplError(f"input not found: {path}") from None
    except OSError as err:
        raise StplError(f"cannot read {path}: {err.strerror or err}") from None


def nothing_selected(source: FrameSource) -> StplError:
    """The error for a selection (start, end) that holds no frame of the folder or video."""
    what = "images" if not source.is_video else "frames"
    return StplError(
        f"no frames selected in {source.path}: it holds {source.total()} {what} and the selection starts at frame "
        f"{source.start}" + ("" if source.end is None else f" and ends before frame {source.end}")
    )


def open_frames(path: str | Path, stride: int = 1, start: int = 0, end: int | None = None) -> FrameSource:
    """A folder of images or a video file; a clear error for anything else or an empty selection."""
    path = Path(path).expanduser()
    if stride < 1 or start < 0 or (end is not None and end <= start):
        raise StplError(f"frame selection needs stride >= 1 and 0 <= start < end, got {stride}, {start}, {end}")
    _check_readable(path)
    source = FrameSource(path, stride, start, end)
    if path.is_dir():
        if not source.all_image_files():
            raise StplError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
        if not source.image_files():
            raise nothing_selected(source)
        return source
    capture = cv2.VideoCapture(str(path))
    readable = capture.isOpened() and capture.read()[0]
    capture.release()
    if not readable:
        raise StplError(f"cannot read {path} as a video (OpenCV could not decode a frame)")
    if source.total() > 0 and source.count() == 0:  # a header without a count is checked as the frames come
        raise nothing_selected(source)
    return source
