"""Bilinear backward warping by optical flow, with a mask of pixels that come from inside the earlier frame."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stpl.flow.geometry import resize_flow


def warp(source: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """out(p) = source(p + flow(p)).

    source: [B,C,H,W] values of the earlier frame; flow: [B,2,h,w] backward flow (dx, dy) in pixels of its own
    size, resized here to H,W. Returns the warped map [B,C,H,W] and a bool mask [B,H,W] that is False where
    p + flow(p) falls outside the earlier frame (those values are border-clamped and should be ignored).
    """
    # Sampling positions need float32 whatever the features' precision: in bf16 a coordinate of 64 or more moves in
    # steps of half a cell, which at stride 8 is several image pixels. Computed outside autocast, cast back.
    precise = source.dtype if source.dtype == torch.float64 else torch.float32
    with torch.autocast(source.device.type, enabled=False):
        warped, valid = _warp_float32(source.to(precise), flow.to(precise))
    return warped.to(source.dtype), valid


def _warp_float32(source: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """`warp` at float32 (or float64) precision."""
    height, width = source.shape[-2:]
    flow = resize_flow(flow.to(source.dtype), (height, width))
    ys = torch.arange(height, device=source.device, dtype=source.dtype).view(1, height, 1)
    xs = torch.arange(width, device=source.device, dtype=source.dtype).view(1, 1, width)
    target_x = xs + flow[:, 0]
    target_y = ys + flow[:, 1]
    valid = (target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
    # grid_sample wants coordinates in [-1, 1] with -1/+1 at the corner pixel centres (align_corners=True).
    grid_x = 2.0 * target_x / max(width - 1, 1) - 1.0
    grid_y = 2.0 * target_y / max(height - 1, 1) - 1.0
    grid = torch.stack((grid_x, grid_y), dim=-1)
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return warped, valid


def warp_error(current: Tensor, previous: Tensor, flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Photometric check of the flow: mean absolute difference [B,h,w] between the current image and the earlier
    image warped to it (both [B,3,H,W], flow [B,2,H,W]), averaged over channels and over each cell of `size`.
    Large where the flow is wrong or the pixel is occluded in the earlier frame."""
    warped, _ = warp(previous, flow)
    error = (warped - current).abs().mean(dim=1, keepdim=True)
    return F.interpolate(error, size=size, mode="area")[:, 0]


def warp_labels(labels: Tensor, flow: Tensor, ignore_index: int = 255) -> Tensor:
    """Nearest-neighbour warp of an integer label map [B,H,W]; invalid pixels become `ignore_index`."""
    batch, height, width = labels.shape
    flow = resize_flow(flow.float(), (height, width))
    ys = torch.arange(height, device=labels.device).view(1, height, 1)
    xs = torch.arange(width, device=labels.device).view(1, 1, width)
    target_x = torch.round(xs + flow[:, 0]).long()
    target_y = torch.round(ys + flow[:, 1]).long()
    valid = (target_x >= 0) & (target_x < width) & (target_y >= 0) & (target_y < height)
    index = target_y.clamp(0, height - 1) * width + target_x.clamp(0, width - 1)
    warped = labels.reshape(batch, -1).gather(1, index.reshape(batch, -1)).view(batch, height, width)
    return torch.where(valid, warped, torch.full_like(warped, ignore_index))
