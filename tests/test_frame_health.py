"""Label-free health signals of predictions (engine/frame_health.py): values by hand, predict.json, a collapsed
model reading as collapsed, and the online reset they can trigger."""

import json
import math

import numpy as np
import pytest
import torch

from conftest import clip
from stpl.engine.frame_health import FrameHealth, HealthLog, frame_health
from stpl.models.segmenter import SegmenterOutput


def output_of(logits: torch.Tensor, warped: torch.Tensor, valid: torch.Tensor) -> SegmenterOutput:
    features = torch.zeros(1, 1, *logits.shape[-2:])
    return SegmenterOutput(logits, logits, warped, valid, features, features)


def test_signals_by_hand():
    """2 classes, 2x2 pixels: frame t says class 1 (p = 3/4) at three pixels and class 0 (p = 3/4) at one; the warped
    earlier prediction says class 1 everywhere; the last pixel's flow left the frame.
    Consistency over the three valid pixels: pixels 0, 1 agree, pixel 2 (class 0) does not -> 2/3.
    Confidence 3/4 everywhere; entropy of (1/4, 3/4) / log 2; largest class share 3/4."""
    three = math.log(3.0)
    logits = torch.tensor([[[0.0, 0.0], [three, 0.0]], [[three, three], [0.0, three]]])[None]
    warped = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])[None]
    valid = torch.tensor([[[True, True], [True, False]]])
    health = frame_health(output_of(logits, warped, valid), has_earlier=True)
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / math.log(2)
    assert health.temporal_consistency == pytest.approx(2 / 3)
    assert health.confidence == pytest.approx(0.75, rel=1e-6)
    assert health.entropy == pytest.approx(entropy, rel=1e-5)
    assert health.largest_class_share == pytest.approx(0.75)
    assert frame_health(output_of(logits, warped, valid), has_earlier=False).temporal_consistency is None


def test_a_video_reads_as_collapsed_only_when_its_last_frames_all_do():
    healthy, collapsed = FrameHealth(0.9, 0.8, 0.3, 0.4), FrameHealth(1.0, 1.0, 0.0, 1.0)
    log = HealthLog()
    for frame in [healthy] * 12 + [collapsed] * 9:
        log.add(frame)
    assert not log.collapsing()  # 21 frames: min(10, 21 // 2) = 10 needed, 9 seen
    log.add(collapsed)
    summary = log.summary()
    assert summary["collapsed"] and summary["collapsed_frames"] == 10
    assert summary["largest_class_share"] == pytest.approx((12 * 0.4 + 10 * 1.0) / 22)
    log.add(healthy)
    assert not log.collapsing()


def write_frames(folder, frames):
    import cv2

    folder.mkdir()
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{index:03d}.png"), frame)
    return folder


def test_predict_json_carries_the_signals_and_flags_a_collapsed_model(toy_checkpoint, collapsed_checkpoint, tmp_path):
    from stpl.cli import main

    frames = write_frames(tmp_path / "frames", clip(6))
    for name, checkpoint in (("healthy", toy_checkpoint), ("collapsed", collapsed_checkpoint)):
        assert main(["predict", "--ckpt", str(checkpoint), "--input", str(frames), "--out", str(tmp_path / name)]) == 0
    healthy = json.loads((tmp_path / "healthy" / "predict.json").read_text())["health"]
    collapsed = json.loads((tmp_path / "collapsed" / "predict.json").read_text())["health"]
    assert [f["frame"] for f in healthy["per_frame"]] == [f"{i:03d}" for i in range(6)]
    assert healthy["per_frame"][0]["temporal_consistency"] is None  # the first frame has no earlier one
    assert all(0.0 <= f["temporal_consistency"] <= 1.0 for f in healthy["per_frame"][1:])
    assert not healthy["summary"]["collapsed"] and healthy["summary"]["largest_class_share"] < 0.99
    assert collapsed["summary"]["collapsed"] and collapsed["summary"]["collapsed_frames"] == 6
    assert collapsed["summary"]["largest_class_share"] == 1.0 and collapsed["summary"]["entropy"] < 1e-3


def test_online_adaptation_resets_after_a_collapse(collapsed_checkpoint, tmp_path):
    """Starting collapsed, every frame reads collapsed. The watch needs max(1, min(10, n // 2)) collapsed frames in
    a row, n the frames seen, and starts afresh after a reset: frames 0, 1, 2 (n = 1, 2, 3: one needed) each reset;
    frame 3 (n = 4: two needed, one seen since the reset) does not. predict.json names those frames."""
    from stpl.predict import load_online

    sets = ["adapt.online.reset_on_collapse=true", "adapt.online.window=2", "adapt.lr=1e-6"]
    predictor, adapter = load_online(collapsed_checkpoint, "tent", sets)
    start = {key: value.clone() for key, value in adapter.start.items()}
    summary = predictor.predict_video(write_frames(tmp_path / "frames", clip(4)), tmp_path / "out", adapter=adapter)
    assert summary["online"]["resets_after"] == ["000", "001", "002"]
    health = summary["health"]["summary"]
    assert health["collapsed_frames"] == 4 and health["collapsed"] is True  # the predictions were, resets or not
    assert np.isfinite(health["entropy"])
    assert any(not torch.equal(v, start[k]) for k, v in adapter.model.state_dict().items())  # frame 3 updated it
    adapter.reset()
    assert all(torch.equal(value, start[key]) for key, value in adapter.model.state_dict().items())
