"""Per-frame nuisances for the synthetic target domain: things a single frame cannot resolve but its predecessor can.

Each frame independently gets (all scaled by `strength` in [0, 1]):
- flicker: a global brightness factor drawn per frame (exposure pumping, street lights);
- sensor noise far above the domain's own;
- transient occluders: a few opaque rectangles (spray, wipers, glare) that exist in this frame only.
Labels stay those of the scene behind: the nuisance is not a class. Because nothing of it persists, the warped
earlier frame carries what the current frame lost, which is what a temporal model should exploit.
"""

from __future__ import annotations

import numpy as np


def add_temporal_nuisance(frame: np.ndarray, seed: int, frame_index: int, strength: float) -> np.ndarray:
    """uint8 RGB [H,W,3] -> the same frame under this frame's own flicker, noise and occluders."""
    if strength <= 0:
        return frame
    rng = np.random.default_rng([seed % (1 << 63), 7, frame_index])
    height, width = frame.shape[:2]
    image = frame.astype(np.float32) / 255.0
    image = image * rng.uniform(1.0 - 0.6 * strength, 1.0 + 0.3 * strength)  # flicker
    for _ in range(rng.integers(1, 4)):  # occluders covering roughly 5-15 % of the frame together
        box_h = int(height * rng.uniform(0.15, 0.35) * strength) + 1
        box_w = int(width * rng.uniform(0.15, 0.35) * strength) + 1
        top, left = rng.integers(0, height - box_h + 1), rng.integers(0, width - box_w + 1)
        image[top : top + box_h, left : left + box_w] = rng.uniform(0.0, 1.0, size=3)
    image = image + rng.normal(0.0, 0.12 * strength, size=image.shape)  # noise
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
