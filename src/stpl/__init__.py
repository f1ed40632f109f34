"""stpl: source-free domain adaptation of video semantic segmentation (STPL, CVPR 2023) and baselines.

import stpl
predictor = stpl.load("model.safetensors")          # a source or adapted checkpoint
masks = predictor.predict(frames)                    # uint8 RGB frames in order -> [H,W] class-id maps
predictor.predict_video("clip.mp4", out="pred")      # masks, overlays, overlay.mp4, predict.json
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(checkpoint, device: str = "cpu", flow_preset: str | None = None):
    """A predictor for a checkpoint (see `stpl.predict.Predictor`); imported on first use so `import stpl` stays
    light."""
    from stpl.predict import load as load_predictor

    return load_predictor(checkpoint, device=device, flow_preset=flow_preset)
