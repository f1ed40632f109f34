"""stpl: source-free domain adaptation of video semantic segmentation (STPL, CVPR 2023) and baselines.

import stpl
predictor = stpl.load("model.safetensors")          # a source or adapted checkpoint
masks = predictor.predict(frames)                    # uint8 RGB frames in order -> [H,W] class-id maps
predictor.predict_video("clip.mp4", out="pred")      # masks, overlays, overlay.mp4, predict.json
"""

from stpl.version import __version__

__all__ = ["__version__", "adapt_video", "load"]


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

    frames: a folder of images, a video file, or a list of uint8 RGB arrays (written first to
    OUT/input_frames-<digest>/).
    settings: config values by dotted key, e.g. {"adapt.iterations": 200, "data.frames.stride": 2}; data, flow
    and model settings otherwise come from the checkpoint.
    """
    from stpl.api import adapt_on_frames

    return adapt_on_frames(source_checkpoint, frames, out, method, settings or {})
