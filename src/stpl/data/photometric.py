"""Photometric augmentation of a pair batch, the same for both frames of a pair so the flow stays valid.

Used for the student's view in self-training (a teacher's confident pixels are trivially matched by a student
that sees the same clean input) and, optionally, in supervised training (`train.photometric`), so that the source
model does not tie its classes to one camera's colour and brightness.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stpl.constants import IMAGENET_MEAN, IMAGENET_STD


def _to_unit(images: Tensor) -> Tensor:
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return images * std + mean


def _from_unit(images: Tensor) -> Tensor:
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def _blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Per-sample separable Gaussian blur, 5 taps; sigma [B] (0 leaves the image unchanged)."""
    offsets = torch.arange(-2, 3, device=images.device, dtype=images.dtype)
    weights = torch.exp(-(offsets[None] ** 2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    weights = weights / weights.sum(dim=1, keepdim=True)  # [B,5]
    batch, channels, height, width = images.shape
    grouped = images.reshape(1, batch * channels, height, width)
    kernel = weights.repeat_interleave(channels, dim=0)  # [B*C,5]
    groups = batch * channels
    grouped = F.conv2d(F.pad(grouped, (2, 2, 0, 0), mode="replicate"), kernel.view(-1, 1, 1, 5), groups=groups)
    grouped = F.conv2d(F.pad(grouped, (0, 0, 2, 2), mode="replicate"), kernel.view(-1, 1, 5, 1), groups=groups)
    return grouped.view(batch, channels, height, width)


def photometric_frames(
    current: Tensor, previous: Tensor, generator: torch.Generator, strength: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Random brightness, contrast, saturation, per-channel gain, blur and noise, shared by both frames of each pair
    (normalised images [B,3,H,W]); data/pairs.photometric_augment applies it to a batch."""
    size = current.shape[0]
    device, dtype = current.device, current.dtype

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        values = torch.rand(size, *shape, generator=generator)
        return (low + (high - low) * values).to(device=device, dtype=dtype)

    s = strength
    brightness = uniform(-0.2 * s, 0.2 * s).view(size, 1, 1, 1)
    contrast = uniform(1 - 0.4 * s, 1 + 0.4 * s).view(size, 1, 1, 1)
    saturation = uniform(1 - 0.5 * s, 1 + 0.5 * s).view(size, 1, 1, 1)
    gain = uniform(1 - 0.15 * s, 1 + 0.15 * s, 3).view(size, 3, 1, 1)
    sigma = uniform(0.0, 1.2 * s) * (torch.rand(size, generator=generator) < 0.5).to(device, dtype)
    noise_level = uniform(0.0, 0.04 * s).view(size, 1, 1, 1)
    noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))

    def apply(images: Tensor, frame: int) -> Tensor:
        unit = _to_unit(images)
        grey = unit.mean(dim=1, keepdim=True)
        unit = grey + saturation * (unit - grey)
        mean = unit.mean(dim=(1, 2, 3), keepdim=True)
        unit = (unit - mean) * contrast + mean + brightness
        unit = _blur(unit * gain, sigma)
        noise_generator = torch.Generator().manual_seed(noise_seed + frame)
        noise = torch.randn(unit.shape, generator=noise_generator).to(device=device, dtype=dtype)
        return _from_unit((unit + noise_level * noise).clamp(0.0, 1.0))

    return apply(current, 0), apply(previous, 1)
