"""Flow fields as geometry: resizing a displacement field with its vectors (torch only, no estimator)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def resize_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize flow [B,2,H,W] (pixels) to `size`, scaling each component by the size ratio."""
    height, width = flow.shape[-2:]
    if (height, width) == tuple(size):
        return flow
    resized = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    # Displacements scale by the size ratio, as in the spec and the peers (pixel centres at (i + 0.5) * ratio).
    scale_x = size[1] / width
    scale_y = size[0] / height
    return resized * resized.new_tensor([scale_x, scale_y]).view(1, 2, 1, 1)
