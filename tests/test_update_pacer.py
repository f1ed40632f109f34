"""online.UpdatePacer and `stpl predict --adapt online --fps`: which frames drive an update under a frame-rate
target, by hand with a clock the test moves, and what predict.json records."""

import json

import pytest

from conftest import clip, write_folder
from stpl.cli import main
from stpl.online import UpdatePacer


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def paced(frames: int, every: int, fps: float, frame_cost: float, update_cost: float):
    clock = Clock()
    pacer = UpdatePacer(every, fps, clock)
    for index in range(frames):
        if pacer.before_frame(index):
            clock.now += update_cost
            pacer.updated_for(index, update_cost)
        clock.now += frame_cost
    return pacer, clock.now


def test_without_a_target_every_allowed_frame_updates():
    assert paced(6, 1, 0.0, 1 / 16, 1 / 2)[0].updated == [0, 1, 2, 3, 4, 5]
    pacer, _ = paced(7, 3, 0.0, 1 / 16, 1 / 2)
    assert pacer.updated == [0, 3, 6] and pacer.skipped == 0


def test_a_target_spaces_updates_by_what_they_cost():
    """8 frames/s leave 1/8 s a frame; a frame costs 1/16 s, an update 1/2 s (binary fractions: the sums are exact).
    After the first update (frame 0, to learn its cost) frame i starts at 1/2 + i/16 and its update fits once
    1/2 + i/16 + 1/2 + 1/16 <= (i + 1) / 8, i.e. i >= 15; from then on one update pays for itself over
    (1/2) / (1/16) = 8 frames."""
    pacer, seconds = paced(64, 1, 8.0, 1 / 16, 1 / 2)
    assert pacer.updated == [0, 15, 23, 31, 39, 47, 55, 63]
    assert pacer.skipped == 56 and pacer.frame_seconds == 1 / 16
    assert seconds == 8.0  # 64 frames in 8 s: the target rate, kept over the whole stream
    assert pacer.summary(64)["update_interval"] == 8.0


def test_frames_slower_than_the_target_never_update_after_the_first():
    pacer, _ = paced(20, 1, 8.0, 1 / 4, 1 / 2)
    assert pacer.updated == [0]


def test_predict_online_at_a_frame_rate_records_the_updates(toy_checkpoint, tmp_path, capsys):
    frames = write_folder(tmp_path / "frames", clip(6))
    out = tmp_path / "online"
    args = ["predict", "--ckpt", str(toy_checkpoint), "--input", str(frames), "--out", str(out), "--adapt", "online",
            "--method", "tent", "--set", "adapt.online.window=2"]  # fmt: skip
    assert main([*args, "--fps", "1000000"]) == 0  # a rate no machine keeps: after the first update, none fits
    online = json.loads((out / "predict.json").read_text())["online"]
    assert online["fps_target"] == 1000000 and online["updates"] == 1 and online["updated_frames"] == ["f000"]
    assert online["skipped_updates"] == 5 and online["update_interval"] == 6 and online["peak_memory_mib"] > 0
    assert main(args) == 0  # no target: every frame updates
    online = json.loads((out / "predict.json").read_text())["online"]
    assert online["fps_target"] is None and online["updates"] == 6 and online["skipped_updates"] == 0


@pytest.mark.parametrize("extra", [["--fps", "15"], ["--adapt", "online", "--fps", "0"]])
def test_fps_needs_online_adaptation_and_a_rate(extra, toy_checkpoint, tmp_path, capsys):
    frames = write_folder(tmp_path / "frames", clip(2))
    args = ["predict", "--ckpt", str(toy_checkpoint), "--input", str(frames), "--out", str(tmp_path / "p"), *extra]
    assert main(args) == 2
    assert "--fps" in capsys.readouterr().err and not (tmp_path / "p").exists()


def test_a_scored_online_run_refuses_a_frame_rate_target(tmp_path, capsys):
    from conftest import TOY_SETTINGS, set_args

    settings = [*TOY_SETTINGS, f"flow.cache_dir={tmp_path / 'flow'}", "adapt.online.fps=15"]
    args = ["bench", "--benchmark", "synthetic", "--methods", "tent-online", "--seeds", "0",
            "--out", str(tmp_path / "b")]  # fmt: skip
    assert main([*args, *set_args(settings)]) == 2
    assert "adapt.online.every" in capsys.readouterr().err
