"""The student's strong view of a batch in self-training: the teacher labels the clean frames, the student learns
those labels from a harder view of the same pixels.

Without it a teacher's confident pixels are ones the student, seeing the same input, already predicts: the
pseudo-label cross-entropy starts near zero and teaches nothing. Three perturbations, each optional:
- geometry (adapt.student_scale_range): a random rescale and crop of frame t, frame t-k and the flow, with the
  pseudo-labels transformed alike (data/geometric.py);
- appearance (adapt.student_augmentation): colour, contrast, blur and noise, the same for both frames
  (data/augment.py);
- cut-out (adapt.student_cutout): a random box of frame t alone is replaced by the mean colour, its labels kept. A
  temporal model can still see that region in the earlier frame, a single-frame one has to guess it from context.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from stpl.config import AdaptConfig
from stpl.constants import IGNORE_INDEX
from stpl.data.geometric import draw_scale_crop, scale_crop
from stpl.data.pairs import PairBatch, photometric_augment


def cutout_boxes(generator: torch.Generator, count: int, size: tuple[int, int], area: float) -> list[tuple[int, ...]]:
    """Per image a box (top, left, height, width) covering about `area` of it, aspect ratio in [0.5, 2]."""
    height, width = size
    boxes = []
    for _ in range(count):
        aspect = float(torch.empty(1).uniform_(0.5, 2.0, generator=generator))
        box_h = min(height, max(1, round((area * height * width * aspect) ** 0.5)))
        box_w = min(width, max(1, round((area * height * width / aspect) ** 0.5)))
        top = int(torch.randint(0, height - box_h + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - box_w + 1, (1,), generator=generator))
        boxes.append((top, left, box_h, box_w))
    return boxes


def cut_out(images: Tensor, boxes: list[tuple[int, ...]]) -> Tensor:
    """Zero (the ImageNet mean after normalisation) one box per image of [B,3,H,W]."""
    out = images.clone()
    for i, (top, left, box_h, box_w) in enumerate(boxes):
        out[i, :, top : top + box_h, left : left + box_w] = 0.0
    return out


def strong_view(
    batch: PairBatch, labels: Tensor, config: AdaptConfig, generator: torch.Generator
) -> tuple[PairBatch, Tensor]:
    """(student batch, pseudo-labels [B,H,W] in the student's geometry); identity when every option is off."""
    if config.student_scale_range:
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        draws = draw_scale_crop(rng, len(labels), config.student_scale_range)
        current, previous, flow, moved = scale_crop(
            batch.current, batch.previous, batch.flow, labels, draws, IGNORE_INDEX
        )
        assert moved is not None
        batch, labels = PairBatch(current, previous, flow, None, batch.index), moved
    if config.student_augmentation > 0:
        batch = photometric_augment(batch, generator, config.student_augmentation)
    if config.student_cutout > 0:
        boxes = cutout_boxes(generator, len(labels), tuple(batch.current.shape[-2:]), config.student_cutout)
        batch = PairBatch(cut_out(batch.current, boxes), batch.previous, batch.flow, batch.label, batch.index)
    return batch, labels
