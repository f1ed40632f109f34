"""Dense optical flow with OpenCV's DIS on CPU (a few milliseconds per pair at a few hundred pixels wide)."""

from __future__ import annotations

import cv2
import numpy as np

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class DISFlow:
    """Backward flow: for each pixel of `current`, its displacement (dx, dy) to `previous`."""

    def __init__(self, preset: str = "medium"):
        if preset not in PRESETS:
            raise ValueError(f"unknown DIS preset '{preset}' (known: {', '.join(PRESETS)})")
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(PRESETS[preset])

    @property
    def name(self) -> str:
        return f"dis-{self.preset}"

    def __call__(self, current_rgb: np.ndarray, previous_rgb: np.ndarray) -> np.ndarray:
        """uint8 [H,W,3] RGB images -> float32 [H,W,2]."""
        current = cv2.cvtColor(current_rgb, cv2.COLOR_RGB2GRAY)
        previous = cv2.cvtColor(previous_rgb, cv2.COLOR_RGB2GRAY)
        # calc(I0, I1) finds f with I0(p) ≈ I1(p + f(p)); I0 = current gives the backward flow.
        return self._dis.calc(current, previous, None).astype(np.float32)
