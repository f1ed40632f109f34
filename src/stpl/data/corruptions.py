"""Fixed, deterministic image corruptions that turn a real target domain into a harder one (e.g. day -> night).

Each corruption is a pure function of the image and the frame's name, so every run, every split and the flow
cache see exactly the same corrupted pixels.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np


def frame_seed(name: str, base_seed: int = 0) -> int:
    """A stable 63-bit seed per frame (Python's hash() changes between processes)."""
    digest = hashlib.sha1(f"{base_seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def night(image: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """x <- 0.6 * x^1.5 on [0, 1] (darker, crushed shadows), Gaussian blur sigma 0.5, Gaussian noise sigma 4/255.

    image: uint8 RGB [H,W,3]; the noise is seeded by (seed, name), so a frame always gets the same noise.
    """
    unit = image.astype(np.float32) / 255.0
    dark = 0.6 * np.power(unit, 1.5)
    blurred = cv2.GaussianBlur(dark, ksize=(0, 0), sigmaX=0.5, sigmaY=0.5, borderType=cv2.BORDER_REFLECT)
    noise = np.random.default_rng(frame_seed(name, seed)).normal(0.0, 4.0 / 255.0, size=image.shape)
    return np.clip(np.round((blurred + noise) * 255.0), 0, 255).astype(np.uint8)


CORRUPTIONS = {"night": night}


def corrupt(image: np.ndarray, name: str, corruption: str, seed: int = 0) -> np.ndarray:
    if corruption == "none":
        return image
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption '{corruption}' (known: none, {', '.join(CORRUPTIONS)})")
    return CORRUPTIONS[corruption](image, name, seed)
