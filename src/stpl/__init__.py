"""stpl: source-free domain adaptation of video semantic segmentation (STPL, CVPR 2023) and baselines.

import stpl
predictor = stpl.load("model.safetensors")          # a source or adapted checkpoint
frames = stpl.read_frames("clip.mp4")                # uint8 RGB arrays [H,W,3] (OpenCV's imread gives BGR)
masks = predictor.predict(frames)                    # uint8 RGB frames in order -> [H,W] class-id maps
predictor.predict_video("clip.mp4", out="pred")      # masks, overlays, overlay.mp4, predict.json
stpl.estimate(["adapted/model.safetensors", "camvid-day"], "clip.mp4", source="camvid-day")  # label-free, best first
"""

from stpl.version import __version__

__all__ = ["__version__", "adapt_video", "estimate", "load", "read_frames"]


def load(
    checkpoint,
    device: str = "cpu",
    flow_preset: str | None = None,
    flow_scale: float | None = None,
    sets: list[str] | None = None,
):
    """A predictor for a checkpoint file or a shipped model's name, e.g. "camvid-day" (see `stpl.predict.load`);
    imported on first use so `import stpl` stays light."""
    from stpl.predict import load as load_predictor

    return load_predictor(checkpoint, device=device, flow_preset=flow_preset, flow_scale=flow_scale, sets=sets)


def adapt_video(source_checkpoint, frames, out, method: str = "stpl", settings: dict | None = None):
    """Adapt a source checkpoint to one's own unlabelled video, source-free; returns the adapted checkpoint's path.
    (Not `stpl.adapt`: that name is the package of the adaptation methods.)

    method: any source-free method, or "auto" (adapt with adapt.auto_candidates, keep the source model as one more
    candidate, choose by the label-free estimate: OUT/choice.json says what and why).
    frames: a folder of images, a video file, or a list of uint8 RGB arrays (written first to
    OUT/input_frames-<digest>/).
    settings: config values by dotted key, e.g. {"adapt.iterations": 200, "data.frames.stride": 2}; data, flow
    and model settings otherwise come from the checkpoint.
    """
    from stpl.api import adapt_on_frames

    return adapt_on_frames(source_checkpoint, frames, out, method, settings or {})


def estimate(checkpoints, frames, source=None, settings: dict | None = None) -> dict:
    """The label-free estimate (docs/label_free.md) of each checkpoint on a folder of images or a video file, best
    first: {"models": [{"name", "estimate", "parts", ...}, ...], "frames", "reference"}. `source`: the source model
    whose classes count (default: the one an adapted checkpoint names); comparable between models on one video."""
    from stpl.api import estimate_on_frames

    if isinstance(checkpoints, str) or not hasattr(checkpoints, "__iter__"):
        checkpoints = [checkpoints]
    return estimate_on_frames(list(checkpoints), frames, source, settings or {})


def read_frames(path, stride: int = 1, start: int = 0, end: int | None = None) -> list:
    """The frames of a video file or a folder of images (sorted by name) as uint8 RGB arrays [H,W,3], in order:
    every `stride`-th from `start` to `end` (exclusive). What `predict` takes: a frame read with OpenCV's
    `cv2.imread` or `VideoCapture` is BGR and needs `cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)` first."""
    from stpl.data.frames import open_frames

    return [frame for _, frame in open_frames(path, stride, start, end)]
