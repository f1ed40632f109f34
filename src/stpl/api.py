"""What `stpl.adapt` does: the `stpl adapt` command on one's own frames, from Python."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stpl.atomic import atomic_write
from stpl.config import Config, build_config, with_overrides
from stpl.config.overrides import nest_key
from stpl.engine.checkpoint import read_meta
from stpl.engine.checkpoint_model import checkpoint_settings
from stpl.errors import StplError
from stpl.estimation import default_reference, estimate_checkpoints
from stpl.pretrained import resolve_checkpoint
from stpl.selection import adapt_auto
from stpl.workflows import adapt, setup_runtime


def _frames_folder(frames: Sequence[np.ndarray], folder: Path) -> Path:
    for index, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise StplError(f"frame {index} is not a uint8 RGB array [H,W,3]")
        ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not ok:
            raise StplError(f"cannot encode frame {index}")
        atomic_write(folder / f"{index:06d}.png", lambda temporary, data=data: Path(temporary).write_bytes(data))
    return folder


def adapt_on_frames(
    source_checkpoint: str | Path,
    frames: str | Path | Sequence[np.ndarray],
    out: str | Path,
    method: str,
    settings: dict[str, Any],
) -> Path:
    source_checkpoint, out = resolve_checkpoint(source_checkpoint, "source checkpoint"), Path(out)
    if not isinstance(frames, str | Path):  # a folder named by the frames' content: other frames, another folder
        frames = list(frames)
        digest = hashlib.blake2b(digest_size=6)
        for frame in frames:
            digest.update(np.ascontiguousarray(frame).tobytes() if isinstance(frame, np.ndarray) else b"?")
        frames = _frames_folder(frames, out / f"input_frames-{digest.hexdigest()}")
    config = own_video_config(source_checkpoint, frames, settings)
    if method == "auto":  # adapt with adapt.auto_candidates, keep the source model as one more, choose by the estimate
        return adapt_auto(config, source_checkpoint, out)
    return adapt(with_overrides(config, {"adapt": {"method": method}}), source_checkpoint, out)


def own_video_config(checkpoint: Path, frames: str | Path, settings: dict[str, Any]) -> Config:
    """The checkpoint's data, flow and model settings (as a command without --config), one's own frames as the
    adaptation split, then `settings` by dotted key."""
    config = build_config(base=checkpoint_settings(checkpoint))
    classes = read_meta(checkpoint).get("class_names") or []
    own = {"data": {"dataset": "frames", "frames": {"path": str(frames), "classes": classes}}}
    config = with_overrides(config, own)
    for key, value in settings.items():
        config = with_overrides(config, nest_key(key, value))
    return config


def estimate_on_frames(
    checkpoints: Sequence[str | Path], frames: str | Path, source: str | Path | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """`stpl estimate` from Python: each checkpoint's label-free estimate on a folder of images or a video file,
    best first, the classes judged against `source` (default: the source model an adapted checkpoint names)."""
    paths = [resolve_checkpoint(checkpoint) for checkpoint in checkpoints]
    if not paths:
        raise StplError("no checkpoint to estimate")
    reference = resolve_checkpoint(source, "source checkpoint") if source is not None else default_reference(paths)
    config = own_video_config(paths[0], frames, settings)
    names = [str(checkpoint) for checkpoint in checkpoints]
    return estimate_checkpoints(paths, names, config, setup_runtime(config), reference)
