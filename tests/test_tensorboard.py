"""`--set log.tensorboard=true`: event files in each run folder, read back with TensorBoard's own loader.

Scalars travel as float32 (the event format's simple_value), so each is compared with the float32 rounding of the
number metrics.jsonl or eval.json holds: both sides round to nearest, which makes the comparison exact (a bound of
one float32 step, ~6e-8 relative, would say the same; the losses are float32 on the device anyway).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import set_args
from stpl.cli import main
from stpl.engine.supervised import Supervised

ON = "log.tensorboard=true"


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def series(accumulator: EventAccumulator, tag: str) -> dict[int, float]:
    points = accumulator.Scalars(tag)
    steps = [point.step for point in points]
    assert len(steps) == len(set(steps)), f"{tag}: a step shown twice ({steps})"
    return {point.step: point.value for point in points}


def as_float32(value: float) -> float:
    return float(np.float32(value))


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_log_lines_match(run_dir: Path, accumulator: EventAccumulator, tags: dict[str, str]) -> None:
    """Every metrics.jsonl key in `tags` (key -> tag) is in the events at the same steps with the same value."""
    lines = metrics(run_dir)
    for key, tag in tags.items():
        expected = {line["step"]: as_float32(line[key]) for line in lines}
        assert series(accumulator, tag) == expected, key


def test_train_source_writes_every_log_value_the_drift_and_overlays(tmp_path, toy_settings):
    out = tmp_path / "source"
    assert main(["train-source", "--out", str(out), *set_args([*toy_settings, ON])]) == 0
    board = events(out)
    tags = {"loss": "loss/total", "loss_seg": "loss/seg", "lr": "train/lr"}
    tags |= {"largest_class_share": "collapse/largest_class_share", "entropy_norm": "collapse/entropy_norm"}
    assert_log_lines_match(out, board, tags)
    assert list(series(board, "loss/total")) == [2, 4]  # train.log_every=2 of 4 steps
    assert series(board, "collapse/collapsed") == {4: 0.0}  # the verdict, in the last log line only
    # Source training updates the BN statistics at every step: they have moved from the starting model's.
    for tag in ("norm/running_mean_shift", "norm/running_var_change"):
        assert all(value > 0 for value in series(board, tag).values()), tag
    images = [tag for tag in board.Tags()["images"] if tag.startswith("overlay/last_batch/")]
    assert len(images) == 2  # the last batch holds train.batch_size=2 pairs
    picture = board.Images(images[0])[-1]
    assert (picture.step, picture.width, picture.height) == (4, 47, 33)  # data.width x data.height


def test_adapt_and_eval_write_method_statistics_no_drift_and_the_scores(tmp_path, toy_settings, toy_checkpoint):
    out = tmp_path / "adapt"
    sets = set_args([*toy_settings, ON])
    assert main(["adapt", "--source-ckpt", str(toy_checkpoint), "--out", str(out), *sets]) == 0
    board = events(out)
    tags = {"loss": "loss/total", "loss_pl": "loss/pl", "loss_contrast": "loss/contrast", "lr": "train/lr",
            "lr_factor": "train/lr_factor"}  # fmt: skip
    tags |= {"kept_fraction": "method/kept_fraction", "teacher_confidence": "method/teacher_confidence"}
    assert_log_lines_match(out, board, tags)
    assert list(series(board, "loss/total")) == [1, 2, 3]
    assert all(0.0 < value < 1.0 for value in series(board, "method/teacher_confidence").values())
    # the rate and its schedule factor agree: one base rate times the factor at every logged step
    rate, factor = series(board, "train/lr"), series(board, "train/lr_factor")
    assert set(rate) == set(factor) and all(0.0 < value <= 1.0 for value in factor.values())
    bases = [rate[step] / factor[step] for step in rate]
    assert all(base == pytest.approx(bases[0], rel=1e-5) for base in bases)
    # adapt.norm=reestimate: AdaBN before the loop, then the statistics stay as they are; the drift is measured
    # from the loop's start, so it is exactly 0 (x - x, whatever the arithmetic).
    for tag in ("norm/running_mean_shift", "norm/running_var_change"):
        assert series(board, tag) == {1: 0.0, 2: 0.0, 3: 0.0}, tag

    assert main(["eval", "--ckpt", str(out / "model.safetensors"), "--out", str(out), *sets]) == 0
    scored = json.loads((out / "eval.json").read_text())
    board = events(out)
    assert series(board, "eval/mIoU") == {3: as_float32(scored["mIoU"])}  # at the scored checkpoint's step
    for name, value in scored["per_class"].items():
        if value is not None:
            assert series(board, f"eval_iou/{name}") == {3: as_float32(value)}, name
    shown = [tag for tag in board.Tags()["images"] if tag.startswith("overlay/eval_prediction_and_labels/")]
    assert len(shown) == 3
    picture = board.Images(shown[0])[-1]
    assert (picture.width, picture.height) == (2 * 47, 33)  # prediction beside labels


def test_norm_update_moves_the_statistics(tmp_path, toy_settings, toy_checkpoint):
    out = tmp_path / "adapt"
    sets = set_args([*toy_settings, ON, "adapt.norm=update", "adapt.method=tent"])
    assert main(["adapt", "--source-ckpt", str(toy_checkpoint), "--out", str(out), *sets]) == 0
    board = events(out)
    assert_log_lines_match(out, board, {"loss_entropy": "loss/entropy"})
    assert all(value > 0 for value in series(board, "norm/running_mean_shift").values())


def test_disabled_by_default_writes_no_event_folder(toy_checkpoint):
    run_dir = toy_checkpoint.parent  # trained by the fixture without log.tensorboard
    assert (run_dir / "model.safetensors").is_file() and not (run_dir / "tensorboard").exists()


def test_without_the_package_it_is_one_line_before_any_work(tmp_path, toy_settings, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # what an environment without the extra looks like
    out = tmp_path / "source"
    assert main(["train-source", "--out", str(out), *set_args([*toy_settings, ON])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stpl[tensorboard]" in err[0] and "log.tensorboard" in err[0], err
    assert not out.exists()


def test_a_resumed_run_shows_each_step_once_with_the_rerun_values(tmp_path, toy_settings, monkeypatch):
    sets = [*toy_settings, ON, "train.log_every=1", "train.checkpoint_every=2", "train.checkpoint_minutes=0"]
    whole = tmp_path / "whole"
    assert main(["train-source", "--out", str(whole), *set_args(sets)]) == 0

    step_of = Supervised.step

    def crash_in_the_fourth_step(self, batch, step):
        if step == 3:  # steps 1-3 are logged, the checkpoint holds step 2: step 3 is logged again after it
            raise RuntimeError("killed")
        return step_of(self, batch, step)

    monkeypatch.setattr(Supervised, "step", crash_in_the_fourth_step)
    out = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="killed"):
        main(["train-source", "--out", str(out), *set_args(sets)])
    monkeypatch.undo()
    # Event files are read in the order of their names, which start with the second they were opened: the resumed
    # run's must come after the crashed one's, as it always does between two processes.
    time.sleep(1.1)
    assert main(["train-source", "--out", str(out), *set_args(sets)]) == 0
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2
    resumed, straight = events(out), events(whole)
    assert_log_lines_match(out, resumed, {"loss": "loss/total", "lr": "train/lr"})
    # The resumed run is bit-identical to the straight one (tests/test_run_faults.py), and so are its events: the
    # drift is measured from the statistics the run started with, kept in the checkpoint.
    for tag in ("loss/total", "train/lr", "norm/running_mean_shift", "norm/running_var_change"):
        assert series(resumed, tag) == series(straight, tag), tag


def test_bench_writes_one_run_per_method_and_seed(tmp_path, toy_settings):
    out = tmp_path / "bench"
    methods = ["source-only", "tent", "tent-online"]  # scored only, adapted then scored, adapted while scored
    args = ["bench", "--benchmark", "synthetic", "--methods", ",".join(methods), "--seeds", "0", "--out", str(out)]
    assert main([*args, *set_args([*toy_settings, ON])]) == 0
    records = json.loads((out / "results.json").read_text())["runs"]
    runs = sorted(path.parent for path in out.glob("runs/*/*/tensorboard"))
    assert [run.parent.name for run in runs] == methods
    for run, record in zip(runs, sorted(records, key=lambda r: r["method"]), strict=True):
        board = events(run)
        assert list(series(board, "eval/mIoU").values()) == [as_float32(record["mIoU"])], run
    assert "loss/entropy" in events(runs[1]).Tags()["scalars"]  # tent's adaptation curve beside its score
    assert len(list(out.glob("source/*/tensorboard"))) == 1  # the source model's training, a run of its own
