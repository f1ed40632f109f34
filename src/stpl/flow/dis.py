"""Dense optical flow with OpenCV's DIS on CPU (a few milliseconds per pair at a few hundred pixels wide)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from stpl.errors import StplError

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
SMALLEST_SIDE = 8  # the shrunk image's floor (DISFlow.__call__); DIS itself decides what it accepts (dis_accepts)


def _log2(value: float) -> float:
    return math.log(value) / math.log(2.0)  # as OpenCV writes it, so that exact powers of two round alike


def _fallback(width: int, finest: int) -> tuple[int, int]:
    """(patch size, coarsest scale) OpenCV picks from the width alone when the image is too small for the preset's
    finest scale (`autoSelectPatchSizeAndScales` in dis_flow.cpp, OpenCV 4.9 and later)."""
    patch = 12 if finest in (3, 4) else 8
    return patch, max(0, math.floor(_log2(2.0 * width / (5.0 * patch))))


def dis_accepts(height: int, width: int, patch: int, finest: int) -> bool:
    """Whether DIS computes a flow for images of this size, mirroring dis_flow.cpp's choice of pyramid levels.

    OpenCV raises on images narrower than a patch, and when the image is too small for the preset's finest scale it
    re-picks the pyramid from the width alone: a wide, short image then gets a coarsest level shorter than a patch,
    and DIS reads outside it (a segmentation fault, e.g. 15x40 or 31x100 pixels). Both are refused here, and so is a
    coarsest level with no whole patch (DIS would leave its flow unset)."""
    if min(height, width) // patch == 0:
        return False
    coarsest = min(
        int(_log2(max(height, width) / (4.0 * patch)) + 0.5),  # C's (int) truncates towards zero, as int() does
        int(_log2(min(height, width) // patch)),
    )
    if coarsest < 0:
        return False
    if coarsest >= finest:  # the preset's own pyramid: every level is at least a patch on each side
        return True
    patch, coarsest = _fallback(width, finest)
    return min(height >> coarsest, width >> coarsest) >= patch


class DISFlow:
    """Backward flow: for each pixel of `current`, its displacement (dx, dy) to `previous`.

    `scale` < 1 runs DIS on images shrunk by that factor and resizes the field back with its vectors: at 0.5 about
    2.5x faster for 0.8 points less label agreement on CamVid source pairs (results/flow-presets).
    """

    def __init__(self, preset: str = "medium", scale: float = 1.0):
        if preset not in PRESETS:
            raise ValueError(f"unknown DIS preset '{preset}' (known: {', '.join(PRESETS)})")
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"DIS scale must be in (0, 1], got {scale}")
        self.preset = preset
        self.scale = scale
        self._dis = cv2.DISOpticalFlow_create(PRESETS[preset])
        # OpenCV's fallback for small images overwrites these for good; they are set again before every pair so
        # that a pair's flow never depends on the pairs this object computed before (threads, stream order).
        self._patch, self._finest = self._dis.getPatchSize(), self._dis.getFinestScale()

    @property
    def name(self) -> str:
        return f"dis-{self.preset}" if self.scale == 1.0 else f"dis-{self.preset}-x{self.scale:g}"

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) DIS runs at for images of this size."""
        if self.scale == 1.0:
            return height, width
        return max(SMALLEST_SIDE, round(height * self.scale)), max(SMALLEST_SIDE, round(width * self.scale))

    def accepts(self, height: int, width: int) -> bool:
        """Whether images of this size (before the scale) can be given to this estimator."""
        return dis_accepts(*self.working_size(height, width), self._patch, self._finest)

    def smallest_scale(self, height: int, width: int) -> float | None:
        """The smallest scale s (in steps of 0.01) such that every scale from s to 1 works at this image size, or
        None when not even full size does."""
        lowest = None
        for hundredths in range(100, 0, -1):
            if not DISFlow(self.preset, hundredths / 100).accepts(height, width):
                break
            lowest = hundredths / 100
        return lowest

    def __call__(self, current_rgb: np.ndarray, previous_rgb: np.ndarray) -> np.ndarray:
        """uint8 [H,W,3] RGB images -> float32 [H,W,2]."""
        height, width = current_rgb.shape[:2]
        if not self.accepts(height, width):
            small = "x".join(map(str, self.working_size(height, width)))
            raise StplError(
                f"images of {height}x{width} pixels are too small for DIS flow (preset {self.preset}, run at "
                f"{small} with flow scale {self.scale:g}); use a larger data size or flow scale"
            )
        current = cv2.cvtColor(current_rgb, cv2.COLOR_RGB2GRAY)
        previous = cv2.cvtColor(previous_rgb, cv2.COLOR_RGB2GRAY)
        if self.scale == 1.0:
            return self._calc(current, previous)
        small_height, small_width = self.working_size(height, width)
        small_size = (small_width, small_height)
        shrunk = (cv2.resize(image, small_size, interpolation=cv2.INTER_AREA) for image in (current, previous))
        small = self._calc(*shrunk)
        # Bilinear with pixel centres at (i + 0.5) * ratio, as flow/geometry.resize_flow; vectors scale with the size.
        flow = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        return flow * np.array([width / small_size[0], height / small_size[1]], np.float32)

    def _calc(self, current: np.ndarray, previous: np.ndarray) -> np.ndarray:
        self._dis.setPatchSize(self._patch)
        self._dis.setFinestScale(self._finest)
        # calc(I0, I1) finds f with I0(p) ≈ I1(p + f(p)); I0 = current gives the backward flow.
        return self._dis.calc(current, previous, None).astype(np.float32)
