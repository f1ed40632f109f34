"""The label-free estimate (analysis/label_free.py) of checkpoints on a data set's unlabelled frames, and the
sentence that compares an adapted model with its source model.

The frames are read as pairs with their real earlier frame and flow whatever the model's `model.temporal`, and
without labels: the estimate is what a user without labels can compute.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from stpl.analysis.label_free import estimate_model
from stpl.config import Config
from stpl.data import build_dataset
from stpl.data.pairs import PairDataset
from stpl.engine.checkpoint import Checkpoint, load_checkpoint, read_meta
from stpl.engine.checkpoint_model import check_classes, model_from_checkpoint, with_checkpoint_model
from stpl.errors import StplError
from stpl.models import VideoSegmenter

ESTIMATE_FILE = "estimate.json"  # beside an adapted model: its estimate and the source model's


def estimation_pairs(config: Config, split: str = "adapt") -> PairDataset:
    """A split's pairs with real earlier frames and flow, labels withheld."""
    return build_dataset(config, split, with_labels=False)


def checkpoint_model(path: Path, config: Config, device: torch.device) -> tuple[VideoSegmenter, bool, Checkpoint]:
    """The checkpoint's own model (its whole model section) on `device`, whether it predicts with the earlier
    frame, and the checkpoint."""
    checkpoint = load_checkpoint(Path(path))
    check_classes(checkpoint, config, Path(path))
    model_config = with_checkpoint_model(config, checkpoint, architecture_only=False)
    model = model_from_checkpoint(checkpoint, model_config, skip_adaptation_modules=False).to(device)
    return model.eval(), model_config.model.temporal, checkpoint


def estimate_checkpoint(
    path: Path,
    config: Config,
    device: torch.device,
    reference: Path | None = None,
    pairs: PairDataset | None = None,
    split: str = "adapt",
) -> dict[str, Any]:
    """The estimate and its parts for the checkpoint at `path` on `split`'s unlabelled pairs (or `pairs`), measured
    against the `reference` checkpoint (the source model) when given."""
    pairs = pairs if pairs is not None else estimation_pairs(config, split)
    model, temporal, _ = checkpoint_model(path, config, device)
    reference_model, reference_temporal = None, True
    if reference is not None:
        reference_model, reference_temporal, _ = checkpoint_model(reference, config, device)
    result = estimate_model(
        model, pairs, config.eval.batch_size, reference_model, temporal, reference_temporal, seed=config.seed
    )
    return {**result, "frames": len(pairs), "reference": None if reference is None else str(reference)}


def compare_with_source(config: Config, device: torch.device, adapted: Path, source: Path) -> dict[str, Any]:
    """The adapted and the source model's estimates on the adaptation frames, and the sentence comparing them."""
    pairs = estimation_pairs(config)
    scores = {name: estimate_checkpoint(path, config, device, source, pairs)
              for name, path in (("adapted", adapted), ("source", source))}  # fmt: skip
    sentence = compare_sentence(scores["adapted"]["estimate"], scores["source"]["estimate"], config.adapt.auto_margin)
    return {"sentence": sentence, "adapted": scores["adapted"], "source": scores["source"], "frames": len(pairs)}


def compare_sentence(adapted: float, source: float, margin: float, name: str = "the adapted model") -> str:
    """One line that says whether `name` looks better than the source model on the video by the estimate; a
    difference within `margin` points is no clear difference."""
    difference = adapted - source
    figures = f"label-free estimate {adapted:.1f} vs the source model's {source:.1f}"
    if difference > margin:
        return f"{name} looks better than the source model on this video ({figures})"
    if difference < -margin:
        return f"{name} looks WORSE than the source model on this video ({figures}): keep the source model"
    return (f"{name} looks no different from the source model on this video ({figures}, within "
            f"{margin:g}): keeping the source model is as safe")  # fmt: skip


def own_video_sets(video: Path, checkpoint: Path) -> list[str]:
    """--set values that make one's own video (a file or a folder of frames) the adaptation split, with the
    checkpoint's classes."""
    if not Path(video).exists():
        raise StplError(f"--input {video}: no such file or folder")
    classes = read_meta(checkpoint).get("class_names") or []
    return ["data.dataset=frames", f"data.frames.path={video}", f"data.frames.classes={json.dumps(classes)}"]


def default_reference(paths: list[Path]) -> Path | None:
    """The source model an adapted checkpoint names in its metadata, when that file is still there."""
    for path in paths:
        named = read_meta(path).get("source_checkpoint")
        if named and Path(named).is_file():
            return Path(named)
    return None


def estimate_checkpoints(
    paths: list[Path], names: list[str], config: Config, device: torch.device, reference: Path | None
) -> dict[str, Any]:
    """Each checkpoint's estimate on the same unlabelled pairs, best first, and the reference it was measured
    against; printed as a table."""
    pairs = estimation_pairs(config)
    rows = []
    for name, path in zip(names, paths, strict=True):
        scored = estimate_checkpoint(path, config, device, reference, pairs)
        rows.append({"name": name, "checkpoint": str(path), **scored})
        parts = scored["parts"]
        print(f"[estimate] {name}: {scored['estimate']:.1f} (temporal {100 * parts['temporal_miou']:.1f}, "
              f"augmentation {100 * parts['augmentation_miou']:.1f}, classes kept "
              f"{100 * parts['class_identity']:.0f} %)", flush=True)  # fmt: skip
    rows.sort(key=lambda row: -row["estimate"])
    return {"frames": len(pairs), "reference": None if reference is None else str(reference), "models": rows}
