"""TPS source-free (Xing et al., ECCV 2022, "Domain Adaptive Video Segmentation via Temporal Pseudo Supervision").

Original (ACCEL DeepLab-v2): besides the supervised source loss, consistency training across frames. The model's
prediction for an earlier target frame, computed without gradient from clean frames, is warped by optical flow to
the current frame; its argmax (no confidence threshold: THRESHOLD = 0 in the release) supervises, by cross-entropy,
the model's prediction for the current frame computed from strongly augmented frames (Gaussian blur p = 0.6,
colour jitter 0.8/0.8/0.8/0.2 p = 0.8, greyscale p = 0.2, both frames alike) rescaled by a random factor
(0.8-1.2 for VIPER -> Cityscapes-Seq) and brought back to the label size. Target loss weight λ_T = 0.5.

Source-free (TPS*): the source loss is dropped; the rest is kept. Our pairs hold (x_t, x_{t-k}) only, so the
clean earlier-frame prediction is the model's single-frame prediction of x_{t-k} (the original fuses it with
x_{t-2k}); it is warped to t by the pair's flow, and pixels whose flow leaves the earlier frame are ignored. The
teacher is the current model itself, in eval mode. The student sees the pair through photometric_augment at
tps.augmentation (2.0: contrast and saturation factors up to 0.2-1.8 and 0-2, blur, noise, shared by both frames)
and a random rescale in tps.scale_range; its fused prediction is upsampled to the image for the cross-entropy.
No horizontal flip (TPS flips the label frames; it adds nothing the pseudo-label relation needs).
Hyper-parameters (tps.*): λ = 0.5 and scale range (0.8, 1.2) from the released VIPER config; augmentation
strength 2.0 chosen to approximate TPS's strong jitter with our augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stpl.adapt.base import AdaptationMethod
from stpl.adapt.shared import (
    generator_state,
    load_generator_state,
    masked_cross_entropy,
    mean_confidence,
    nearest_resize,
)
from stpl.adapt.teachers import Teacher
from stpl.config import AdaptConfig
from stpl.constants import IGNORE_INDEX
from stpl.data.pairs import PairBatch, photometric_augment
from stpl.models.segmenter import SegmenterOutput, VideoSegmenter, upsample


def cross_frame_pseudo_labels(teacher: SegmenterOutput, size: tuple[int, int]) -> Tensor:
    """argmax of the earlier frame's prediction warped to t [B,H,W]; pixels flowing outside it are ignored."""
    labels = upsample(teacher.warped_logits, size).argmax(dim=1)
    return torch.where(nearest_resize(teacher.valid, size), labels, torch.full_like(labels, IGNORE_INDEX))


class TPS(AdaptationMethod):
    name = "tps"

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        super().__init__(model, config)
        self.options = config.tps
        self.teacher = Teacher("current", model)
        self.generator = torch.Generator().manual_seed(seed)

    def strong_view(self, batch: PairBatch) -> PairBatch:
        """Photometric perturbation shared by both frames, then one random rescale of the pair."""
        view = photometric_augment(batch, self.generator, self.options.augmentation)
        low, high = self.options.scale_range
        scale = low + (high - low) * float(torch.rand(1, generator=self.generator))
        height, width = batch.current.shape[-2:]
        size = (max(1, round(height * scale)), max(1, round(width * scale)))

        def resize(images: Tensor) -> Tensor:
            return F.interpolate(images, size=size, mode="bilinear", align_corners=False)

        # The flow keeps its own grid: the model resizes it to the features and scales its displacements.
        return PairBatch(resize(view.current), resize(view.previous), view.flow, view.label, view.index)

    def step(self, batch: PairBatch, step: int) -> dict[str, Tensor]:
        size = batch.current.shape[-2:]
        teacher = self.teacher.predict(batch)
        labels = cross_frame_pseudo_labels(teacher, size)
        view = self.strong_view(batch)
        student = self.model(view.current, view.previous, view.flow)
        loss = masked_cross_entropy(upsample(student.logits, size), labels)
        return {
            "loss_tps": self.options.lambda_tps * loss,
            "kept_fraction": (labels != IGNORE_INDEX).float().mean(),
            "teacher_confidence": mean_confidence(teacher.warped_logits),  # of the warped prediction it learns
        }

    def extra_state(self) -> dict[str, Tensor]:
        return generator_state(self.generator)

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        load_generator_state(state, self.generator)
