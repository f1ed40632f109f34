"""Shared fixtures: a tiny model and a toy config that every end-to-end test can afford on two CPU cores."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stpl.config import Config, build_config
from stpl.models import VideoSegmenter, build_model

# Toy tensors gain nothing from intra-op threads, and spinning threads crawl when the machine is busy. It also
# makes every in-process comparison run its reductions in one order on any machine, whatever its core count;
# subprocesses (the gloo workers in test_distributed.py) keep the default count, and their bounds allow for it.
torch.set_num_threads(1)

TOY_SETTINGS = [
    "model.backbone=tiny",
    "model.pretrained=false",
    "model.feature_channels=16",
    "model.projection_dim=8",
    "model.aspp_rates=[1, 2]",
    "model.output_stride=8",
    "data.height=33",
    "data.width=47",
    "data.synthetic.num_frames=3",
    "data.synthetic.source_clips=3",
    "data.synthetic.adapt_clips=2",
    "data.synthetic.eval_clips=2",
    "train.iterations=4",
    "train.batch_size=2",
    "train.log_every=2",
    "train.checkpoint_every=2",
    "adapt.iterations=3",
    "adapt.batch_size=2",
    "adapt.log_every=1",
    "adapt.checkpoint_every=2",
    "adapt.anchors_per_class=8",
    "eval.batch_size=3",
]


@pytest.fixture
def toy_settings(tmp_path) -> list[str]:
    return [*TOY_SETTINGS, f"flow.cache_dir={tmp_path / 'flow-cache'}"]


@pytest.fixture
def toy_config(toy_settings) -> Config:
    return build_config(sets=toy_settings)


def make_tiny_model(num_classes: int = 5, fusion: str = "conv") -> VideoSegmenter:
    config = build_config(sets=[*TOY_SETTINGS, f"model.fusion={fusion}"])
    torch.manual_seed(0)
    return build_model(num_classes, **config.model.network_options())


@pytest.fixture
def opened_splits(monkeypatch) -> list[tuple[str, bool]]:
    """Records every (split, with_labels) a command asks the data layer for, e.g. to check source-freeness."""
    import stpl.data
    import stpl.workflows

    calls: list[tuple[str, bool]] = []
    original = stpl.data.build_dataset

    def recording_build(config, split, with_labels):
        calls.append((split, with_labels))
        return original(config, split, with_labels)

    monkeypatch.setattr(stpl.data, "build_dataset", recording_build)
    monkeypatch.setattr(stpl.workflows, "build_dataset", recording_build)
    return calls


def set_args(settings: list[str]) -> list[str]:
    return [arg for s in settings for arg in ("--set", s)]


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    """A toy source model trained once per test module (prediction tests only read it)."""
    from stpl.cli import main

    out = tmp_path_factory.mktemp("source")
    settings = [*TOY_SETTINGS, f"flow.cache_dir={out / 'flow'}"]
    assert main(["train-source", "--out", str(out / "run"), *set_args(settings)]) == 0
    return out / "run" / "model.safetensors"


@pytest.fixture
def collapsed_checkpoint(toy_checkpoint, tmp_path) -> Path:
    """The toy model with +1000 on class 0 of every classifier bias: it predicts class 0, certain, everywhere."""
    from stpl.engine.checkpoint import load_checkpoint, save_checkpoint

    saved = load_checkpoint(toy_checkpoint)
    state = dict(saved.model)
    classes = len(saved.class_names)
    biased = [key for key, value in state.items() if key.endswith("bias") and value.shape == (classes,)]
    assert biased
    for key in biased:
        state[key] = state[key].clone()
        state[key][0] += 1000.0
    path = tmp_path / "collapsed.safetensors"
    save_checkpoint(path, state, saved.meta)
    return path


def clip(count: int = 5, height: int = 41, width: int = 57) -> list[np.ndarray]:
    """A textured square moving right over a gradient (odd size: the model resizes to its own)."""
    texture = np.random.default_rng(0).integers(0, 255, (15, 15, 3), dtype=np.uint8)
    frames = []
    for t in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = np.linspace(0, 200, width, dtype=np.uint8)
        frame[10:25, 5 + 3 * t : 20 + 3 * t] = texture
        frames.append(frame)
    return frames


def write_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"f{t:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder
