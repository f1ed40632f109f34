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


def adverse(image: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """A different bad moment per frame, so that what one frame loses its neighbours may still show:
    - brightness flicker: x <- g * x, g drawn in [0.45, 1.15];
    - rain-like streaks: 40-120 thin bright slanted lines, 8-25 % of the image height long;
    - transient occluders: 1-2 boxes (spray, wiper, glare) of a flat colour, 5-20 % of the image together;
    - motion blur: a horizontal box kernel 1-9 pixels wide (at 320 columns; scaled with the width);
    - sensor noise: Gaussian, sigma in [2, 12] / 255.
    image: uint8 RGB [H,W,3]; every draw is seeded by (seed, name), so a frame always looks the same.
    """
    rng = np.random.default_rng(frame_seed(f"adverse:{name}", seed))
    height, width = image.shape[:2]
    unit = image.astype(np.float32) / 255.0 * rng.uniform(0.45, 1.15)
    streaks = np.zeros((height, width), dtype=np.float32)
    slant = rng.uniform(-0.3, 0.3)  # one wind direction per frame
    for _ in range(int(rng.integers(40, 121))):
        length = int(height * rng.uniform(0.08, 0.25))
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        end = (int(x0 + slant * length), min(y0 + length, height - 1))
        cv2.line(streaks, (x0, y0), end, color=float(rng.uniform(0.3, 0.7)), thickness=1)
    unit = unit + streaks[..., None]
    for _ in range(int(rng.integers(1, 3))):
        area = rng.uniform(0.05, 0.12) * height * width
        aspect = rng.uniform(0.5, 2.0)
        box_h = min(height, int(np.sqrt(area * aspect)) + 1)
        box_w = min(width, int(np.sqrt(area / aspect)) + 1)
        top, left = int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1))
        unit[top : top + box_h, left : left + box_w] = rng.uniform(0.0, 1.0, size=3)
    blur = max(1, round(int(rng.integers(1, 10)) * width / 320))
    if blur > 1:
        unit = cv2.blur(unit, (blur, 1), borderType=cv2.BORDER_REFLECT)
    unit = unit + rng.normal(0.0, rng.uniform(2.0, 12.0) / 255.0, size=unit.shape)
    return np.clip(np.round(unit * 255.0), 0, 255).astype(np.uint8)


def fog(image: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """Uniform haze: x <- t x + (1 - t) A on [0, 1], transmission t = 0.5, airlight A = 0.8 (grey), then a
    Gaussian blur of sigma 1 (at 320 columns; scaled with the width). Deterministic; `name` and `seed` unused."""
    unit = image.astype(np.float32) / 255.0
    hazy = 0.5 * unit + 0.5 * 0.8
    sigma = image.shape[1] / 320
    hazy = cv2.GaussianBlur(hazy, ksize=(0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.round(hazy * 255.0), 0, 255).astype(np.uint8)


def colour_cast(image: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """A sodium-lamp cast: per-channel gains (R 1.2, G 0.9, B 0.55) after a gamma of 1.2 on [0, 1].
    Deterministic; `name` and `seed` unused."""
    unit = np.power(image.astype(np.float32) / 255.0, 1.2) * np.array([1.2, 0.9, 0.55], np.float32)
    return np.clip(np.round(unit * 255.0), 0, 255).astype(np.uint8)


# Held-out shifts: for choosing online settings on streams whose shifts differ from the scored ones
# (camvid-15hz-continual scores night, fog, adverse and colour_cast).


def low_contrast(image: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """Washed out: x <- 0.4 x + 0.35 on [0, 1] (a third of the range left, lifted blacks), no blur.
    Deterministic; `name` and `seed` unused."""
    unit = 0.4 * (image.astype(np.float32) / 255.0) + 0.35
    return np.clip(np.round(unit * 255.0), 0, 255).astype(np.uint8)


def defocus(image: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """Out of focus: a Gaussian blur of sigma 3 (at 320 columns; scaled with the width).
    Deterministic; `name` and `seed` unused."""
    sigma = 3.0 * image.shape[1] / 320
    blurred = cv2.GaussianBlur(image.astype(np.float32), ksize=(0, 0), sigmaX=sigma, sigmaY=sigma,
                               borderType=cv2.BORDER_REFLECT)  # fmt: skip
    return np.clip(np.round(blurred), 0, 255).astype(np.uint8)


def cold_cast(image: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """A blue, LED-lit cast: per-channel gains (R 0.65, G 0.9, B 1.25) after a gamma of 0.9 on [0, 1].
    Deterministic; `name` and `seed` unused."""
    unit = np.power(image.astype(np.float32) / 255.0, 0.9) * np.array([0.65, 0.9, 1.25], np.float32)
    return np.clip(np.round(unit * 255.0), 0, 255).astype(np.uint8)


def sensor_noise(image: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """High-gain sensor noise: Gaussian, sigma 20/255, seeded by (seed, name) like `night`'s."""
    noise = np.random.default_rng(frame_seed(f"sensor_noise:{name}", seed)).normal(0.0, 20.0, size=image.shape)
    return np.clip(np.round(image.astype(np.float32) + noise), 0, 255).astype(np.uint8)


CORRUPTIONS = {
    "night": night, "adverse": adverse, "fog": fog, "colour_cast": colour_cast,
    "low_contrast": low_contrast, "defocus": defocus, "cold_cast": cold_cast, "sensor_noise": sensor_noise,
}  # fmt: skip


def corrupt(image: np.ndarray, name: str, corruption: str, seed: int = 0) -> np.ndarray:
    if corruption == "none":
        return image
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption '{corruption}' (known: none, {', '.join(CORRUPTIONS)})")
    return CORRUPTIONS[corruption](image, name, seed)
