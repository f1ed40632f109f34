"""Random scale and crop of a pair batch, the same for frame t, frame t-k, the flow and the label.

Each pair is resized by its own factor s, padded to at least the batch size (images with 0, i.e. the ImageNet
mean after normalisation; labels with IGNORE_INDEX; flow with 0) at the bottom and right, then cropped back to the
batch size. The flow is a displacement in pixels, so resizing multiplies it by the size ratio of its axis; the crop
moves both frames alike and leaves it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def draw_scale_crop(
    rng: np.random.Generator, count: int, scale_range: Sequence[float]
) -> list[tuple[float, float, float]]:
    """Per pair: (scale, vertical and horizontal crop position in [0, 1))."""
    low, high = scale_range
    return [(float(rng.uniform(low, high)), float(rng.random()), float(rng.random())) for _ in range(count)]


def _resize(image: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """[C,H,W] -> [C,h,w]."""
    if mode == "nearest":
        return F.interpolate(image[None].float(), size=size, mode="nearest")[0]
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


def _pad_crop(image: Tensor, top: int, left: int, size: tuple[int, int], fill: float) -> Tensor:
    """Pad [C,h,w] at the bottom and right to at least `size` with `fill`, then cut `size` at (top, left)."""
    height, width = size
    pad_bottom, pad_right = max(height - image.shape[-2], 0), max(width - image.shape[-1], 0)
    if pad_bottom or pad_right:
        image = F.pad(image, (0, pad_right, 0, pad_bottom), value=fill)
    return image[:, top : top + height, left : left + width]


def scale_crop(
    current: Tensor,
    previous: Tensor,
    flow: Tensor,
    label: Tensor | None,
    draws: Sequence[tuple[float, float, float]],
    ignore_index: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Apply one (scale, top fraction, left fraction) per pair of [B,3,H,W] frames, [B,2,H,W] flow and [B,H,W]
    labels; the output keeps the height and width."""
    size = (current.shape[-2], current.shape[-1])
    currents, previouses, flows, labels = [], [], [], []
    for i, (scale, top_fraction, left_fraction) in enumerate(draws):
        scaled = (max(round(size[0] * scale), 1), max(round(size[1] * scale), 1))
        top = int(top_fraction * (max(scaled[0] - size[0], 0) + 1))
        left = int(left_fraction * (max(scaled[1] - size[1], 0) + 1))
        ratio = flow.new_tensor([scaled[1] / size[1], scaled[0] / size[0]]).view(2, 1, 1)  # (x, y)
        currents.append(_pad_crop(_resize(current[i], scaled, "bilinear"), top, left, size, 0.0))
        previouses.append(_pad_crop(_resize(previous[i], scaled, "bilinear"), top, left, size, 0.0))
        flows.append(_pad_crop(_resize(flow[i], scaled, "bilinear") * ratio, top, left, size, 0.0))
        if label is not None:
            resized = _resize(label[i][None], scaled, "nearest")
            labels.append(_pad_crop(resized, top, left, size, float(ignore_index))[0].long())
    out_label = torch.stack(labels) if label is not None else None
    return torch.stack(currents), torch.stack(previouses), torch.stack(flows), out_label
