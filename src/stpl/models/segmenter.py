"""The ACCEL-style video segmenter with STPL's spatio-temporal fusion block and projection head.

    f_t = E(x_t), f_p = E(x_{t-k})                       shared encoder (backbone + neck), C channels
    s_t = cls(f_t), s_p = cls(f_p)                       per-frame logits
    s = ScoreFusion(s_t, W(s_p, o))                      the video prediction (identity at initialisation)
    z_t = S(f_t, W(f_p, o)),  e_t = normalize(P(z_t))    spatio-temporal pixel embeddings (adaptation only)

Everything is computed at the feature resolution (input / output_stride); `upsample` brings logits to any size.
Where the flow leads outside the earlier frame, the warped maps are replaced by the current ones, so the fusion
falls back to the current frame there. With `warp_error_limit` > 0 the same happens where the warped earlier image
differs from the current one by more than the limit (flow errors, occlusions, frames far apart in time).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stpl.models.fusion import build_fusion
from stpl.models.heads import ProjectionHead, ScoreFusion
from stpl.models.warp import warp, warp_error


@dataclass
class SegmenterOutput:
    logits: Tensor  # [B,K,h,w] fused video prediction
    frame_logits: Tensor  # [B,K,h,w] current frame alone
    warped_logits: Tensor  # [B,K,h,w] earlier frame's logits warped to t (current where invalid)
    valid: Tensor  # [B,h,w] bool, earlier-frame pixel inside the image (and passing the warp check, if on)
    features: Tensor  # [B,C,h,w] f_t
    warped_features: Tensor  # [B,C,h,w] W(f_{t-k}) (f_t where invalid)
    embeddings: Tensor | None = None  # [B,D,h,w] unit-norm pixel embeddings of z_t


# Parameter-name prefixes of the parts adaptation adds (fusion block, projection head): a source model's values
# for them are never used, and only STPL's contrast trains them.
ADAPTATION_MODULES = ("fusion.", "projection.")


class VideoSegmenter(nn.Module):
    """backbone -> neck (e.g. ASPP) gives the encoder features f; classifier maps f to per-frame logits.

    The parts are plain modules so other architectures (e.g. DeepLab-v2, whose classifier is itself an ASPP) plug
    in through `build_model` without touching the video logic here.
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        classifier: nn.Module,
        num_classes: int,
        feature_channels: int,
        fusion: str = "conv",
        projection_dim: int = 128,
        warp_error_limit: float = 0.0,
    ):
        super().__init__()
        self.warp_error_limit = warp_error_limit
        self.num_classes = num_classes
        self.backbone = backbone
        self.neck = neck
        self.classifier = classifier
        self.score_fusion = ScoreFusion(num_classes)
        self.fusion = build_fusion(fusion, feature_channels)
        self.projection = ProjectionHead(self.fusion.out_channels, feature_channels, projection_dim)

    def encode(self, images: Tensor) -> Tensor:
        return self.neck(self.backbone(images))

    def classify(self, features: Tensor) -> Tensor:
        return self.classifier(features)

    def encode_frame(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(features, per-frame logits) of one frame: what `forward` can take back as *_encoded."""
        features = self.encode(images)
        return features, self.classify(features)

    def embed(self, current_features: Tensor, warped_features: Tensor) -> Tensor:
        return self.projection(self.fusion(current_features, warped_features))

    def forward(
        self,
        current: Tensor,
        previous: Tensor,
        flow: Tensor,
        with_embeddings: bool = False,
        grad_previous: bool = False,
        previous_encoded: tuple[Tensor, Tensor] | None = None,
        current_encoded: tuple[Tensor, Tensor] | None = None,
    ) -> SegmenterOutput:
        """current, previous: [B,3,H,W] normalised images; flow: [B,2,H,W] backward flow t -> t-k in pixels.

        previous_encoded / current_encoded: a frame's (features, frame_logits) when already known (streaming
        prediction keeps the previous step's for frame t-k; a frame paired with itself needs one pass), so that
        frame's encoder pass is skipped.
        """
        if current_encoded is not None:
            features, frame_logits = current_encoded
        else:
            features, frame_logits = self.encode_frame(current)
        if previous_encoded is not None:
            previous_features, previous_logits = previous_encoded
        else:
            with torch.set_grad_enabled(grad_previous and torch.is_grad_enabled()):
                previous_features = self.encode(previous)
                previous_logits = self.classify(previous_features)
        # Warp features and logits together: one grid, one validity mask.
        warped_both, valid = warp(torch.cat((previous_features, previous_logits), dim=1), flow)
        if self.warp_error_limit > 0:
            valid = valid & (warp_error(current, previous, flow, valid.shape[-2:]) <= self.warp_error_limit)
        keep = valid.unsqueeze(1)
        channels = features.shape[1]
        warped_features = torch.where(keep, warped_both[:, :channels], features.detach())
        warped_logits = torch.where(keep, warped_both[:, channels:], frame_logits.detach())
        logits = self.score_fusion(frame_logits, warped_logits)
        embeddings = self.embed(features, warped_features) if with_embeddings else None
        return SegmenterOutput(logits, frame_logits, warped_logits, valid, features, warped_features, embeddings)


def earlier_frame_sources(current: Tensor, previous: Tensor) -> list[int | None]:
    """For each pair i, the index j of a pair whose frame t is exactly pair i's earlier frame (None if none is):
    in a window of consecutive pairs, pair i's frame t-1 is pair i-1's frame t, and a frame paired with itself
    is its own."""
    sources: list[int | None] = []
    for i in range(len(previous)):
        candidates = [j for j in (i - 1, i) if 0 <= j < len(current)]
        sources.append(next((j for j in candidates if torch.equal(previous[i], current[j])), None))
    return sources


@torch.no_grad()
def predict_sharing_frames(model: nn.Module, current: Tensor, previous: Tensor, flow: Tensor) -> SegmenterOutput:
    """`model(current, previous, flow)` for a model in eval mode, where every frame is encoded on its own (stored
    or per-frame normalisation statistics), with each distinct frame encoded once: a teacher's window of
    consecutive pairs passes 9 frames through the encoder instead of 16."""
    if not isinstance(model, VideoSegmenter):  # another model (a test's stand-in): its own forward
        return model(current, previous, flow)
    sources = earlier_frame_sources(current, previous)
    features, logits = model.encode_frame(current)
    missing = [i for i, j in enumerate(sources) if j is None]
    if missing:
        extra_features, extra_logits = model.encode_frame(previous[missing])
        features, logits = torch.cat((features, extra_features)), torch.cat((logits, extra_logits))
    # pair i's earlier frame: frame t of pair sources[i], or its own encoding after the current frames'
    index = [j if j is not None else len(current) + missing.index(i) for i, j in enumerate(sources)]
    return model(current, previous, flow, current_encoded=(features[: len(current)], logits[: len(current)]),
                 previous_encoded=(features[index], logits[index]))  # fmt: skip


def upsample(logits: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
