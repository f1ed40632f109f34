"""The continual stream (data/continual.py), its scores per round and shift (engine/continual_scores.py) and the
corruptions it adds, on cases worked out by hand; the CamVid protocol end to end where the data is present."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TOY_SETTINGS, set_args
from stpl.data.continual import continual_schedule, stream_segment
from stpl.data.corruptions import colour_cast, fog
from stpl.engine.continual_scores import ContinualScores

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


def test_schedule_by_hand():
    """5 frames a..e, shifts x, y, 3 frames a block, 2 rounds: block x = a, b, c; block y = d, e, then a again
    (wrapped: a pairs with itself, not with e); the stream is the two blocks twice."""
    entries, stream = continual_schedule(list("abcde"), ["x", "y"], frames=3, rounds=2)
    assert entries == [("a", "x"), ("b", "x"), ("c", "x"), ("d", "y"), ("e", "y"), ("a", "y")]
    block = [(0, 0), (1, 0), (2, 1), (3, 3), (4, 3), (5, 5)]
    assert stream == block + block
    assert [stream_segment(p, shifts=2, frames=3) for p in (0, 2, 3, 5, 6, 11)] == [
        (0, 0), (0, 0), (0, 1), (0, 1), (1, 0), (1, 1)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="continual stream"):
        continual_schedule([], ["x"], 3, 1)


def test_scores_per_round_and_shift_by_hand():
    """2 shifts, 1 frame each, 2 rounds; one pixel of class 0 per frame. Round 0: right, then wrong (class 1):
    mIoU 100 (class 1 absent and never predicted: not counted) and 0 (both classes IoU 0); round 1 right twice."""
    scores = ContinualScores(2, ["x", "y"], frames=1, rounds=2)
    label = torch.zeros(1, 1, 1, dtype=torch.long)
    for position, predicted in enumerate([0, 1, 0, 0]):
        scores.update(position, torch.full((1, 1, 1), predicted), label)
    summary = scores.summary(["a", "b"], None)
    assert summary["mIoU"] == [[100.0, 0.0], [100.0, 100.0]]
    assert summary["round_mean"] == [50.0, 100.0] and summary["shift_mean"] == {"x": 100.0, "y": 50.0}
    assert summary["first_round"] == 50.0 and summary["last_round"] == 100.0 and summary["last_minus_first"] == 50.0


def test_fog_and_colour_cast_by_hand():
    """fog: 0.5 x + 0.4 on [0, 1]; 100 -> 0.5 * 100 / 255 + 0.4 = 0.5961 -> 152 (a constant image: the blur changes
    nothing). colour cast: 128 -> (128 / 255) ** 1.2 = 0.4374, times (1.2, 0.9, 0.55) -> 133.8, 100.4, 61.3."""
    grey = np.full((6, 8, 3), 100, np.uint8)
    assert np.all(fog(grey, "f") == 152)
    cast = colour_cast(np.full((6, 8, 3), 128, np.uint8), "f")
    assert cast[0, 0].tolist() == [134, 100, 61] and np.all(cast == cast[0, 0])


@pytest.mark.skipif(not CAMVID.is_dir(), reason="needs ../shared/data/camvid")
def test_the_continual_protocol_online_in_a_bench(tmp_path):
    """Tiny frames and model: the stream has 4 shifts x 2 frames x 2 rounds = 16 scored predictions, each frame's
    name carries its shift, and the results hold the per-round table."""
    from stpl.cli import main
    from stpl.config import build_config
    from stpl.config.files import packaged_config_dir
    from stpl.data import build_dataset

    sets = [*TOY_SETTINGS, "data.height=24", "data.width=32", f"data.camvid.root={CAMVID}",
            f"flow.cache_dir={tmp_path / 'flow'}", "data.camvid.continual_frames=2", "data.camvid.continual_rounds=2",
            "train.iterations=2", "adapt.online.window=2"]  # fmt: skip
    config = build_config(packaged_config_dir() / "camvid_15hz_continual" / "base.yaml", sets)
    stream = build_dataset(config, "eval", with_labels=True)
    assert len(stream) == 16 and len(stream.names) == 8  # each (frame, shift) once, the rounds repeat them
    assert [stream.names[c].split("@")[1] for c in stream.pairs[:8, 0]] == [
        "night", "night", "fog", "fog", "adverse", "adverse", "colour_cast", "colour_cast"
    ]  # fmt: skip
    assert stream.pairs[0, 0] == stream.pairs[0, 1] and stream.pairs[1, 1] == stream.pairs[0, 0]
    assert np.array_equal(stream.pairs[:8], stream.pairs[8:])
    out = tmp_path / "bench"
    args = ["bench", "--benchmark", "camvid-15hz-continual", "--methods", "source-only,norm-online", "--seeds", "0"]
    assert main([*args, "--out", str(out), *set_args(sets)]) == 0
    runs = {run["method"]: run for run in json.loads((out / "results.json").read_text())["runs"]}
    continual = runs["norm-online"]["continual"]
    assert len(continual["mIoU"]) == 2 and len(continual["mIoU"][0]) == 4
    assert all(math.isfinite(v) for row in continual["mIoU"] for v in row)
    assert "first round" in (out / "results.md").read_text()
