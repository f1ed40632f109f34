"""Faults, third round (issue 35): each case is one line naming the file or setting and the cause, exit 2, nothing
written where the user did not ask and nothing lost."""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest

from conftest import set_args
from stpl.cli import main
from test_faults import one_error_line, rewrite_metadata


@pytest.fixture
def trained(tmp_path, toy_settings):
    source = tmp_path / "source"
    assert main(["train-source", "--out", str(source), *set_args(toy_settings)]) == 0
    return source / "model.safetensors"


def frames_folder(folder, count: int = 3):
    folder.mkdir()
    for index in range(count):
        cv2.imwrite(str(folder / f"f{index}.png"), np.full((20, 30, 3), 40 * index, np.uint8))
    return folder


def test_a_checkpoint_never_decides_where_files_land(trained, tmp_path, monkeypatch):
    """Its metadata names a flow cache and a scratch folder: adapt and predict use the user's (here the defaults
    under a test HOME) and write nothing into the checkpoint's."""
    from stpl.engine.checkpoint import read_meta

    meta = read_meta(trained)
    chosen_flow, chosen_scratch = tmp_path / "chosen-flow", tmp_path / "chosen-scratch"
    meta["config"]["flow"]["cache_dir"] = str(chosen_flow)
    meta["config"]["data"].update(storage="disk", storage_dir=str(chosen_scratch))
    crafted = tmp_path / "crafted.safetensors"
    rewrite_metadata(trained, crafted, json.dumps(meta))
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    adapt = ["adapt", "--source-ckpt", str(crafted), "--out", str(tmp_path / "adapt"), "--set", "adapt.iterations=2"]
    assert main(adapt) == 0
    predict = ["predict", "--ckpt", str(crafted), "--input", str(frames_folder(tmp_path / "frames")),
               "--out", str(tmp_path / "pred")]  # fmt: skip
    assert main(predict) == 0
    assert not chosen_flow.exists() and not chosen_scratch.exists()
    assert any((home / ".cache" / "stpl" / "flow").rglob("*")), "the flow went to the user's own cache"


def test_checkpoint_settings_drop_every_local_path():
    from stpl.engine.checkpoint_model import LOCAL_PATH_KEYS, without_local_paths

    names = {".".join(path) for path in LOCAL_PATH_KEYS}
    assert {"flow.cache_dir", "data.storage_dir", "data.camvid.root", "data.frames.path", "model.weights_path"} <= names
    saved = {"data": {"camvid": {"root": "/theirs", "target_sequence": "0001TP"}, "storage_dir": "/x", "height": 9},
             "flow": {"cache_dir": "/y", "method": "dis"},
             "model": {"weights_path": "/z", "backbone": "tiny"}}  # fmt: skip
    kept = without_local_paths(saved)
    assert kept == {"data": {"camvid": {"target_sequence": "0001TP"}, "height": 9}, "flow": {"method": "dis"},
                    "model": {"backbone": "tiny"}}  # fmt: skip
    assert saved["data"]["camvid"]["root"] == "/theirs"  # the checkpoint's own dict is left as read


def test_metadata_nested_too_deep_is_one_line(trained, tmp_path, capsys):
    deep = tmp_path / "deep.safetensors"
    rewrite_metadata(trained, deep, '{"config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    frames = frames_folder(tmp_path / "frames")
    assert main(["predict", "--ckpt", str(deep), "--input", str(frames), "--out", str(tmp_path / "pred")]) == 2
    line = one_error_line(capsys)
    assert str(deep) in line and "nested too deep" in line


def test_a_metadata_value_of_the_wrong_kind_names_the_file(trained, tmp_path, capsys):
    from stpl.engine.checkpoint import read_meta

    meta = read_meta(trained)
    meta["config"]["model"]["feature_channels"] = "many"
    wrong = tmp_path / "wrong.safetensors"
    rewrite_metadata(trained, wrong, json.dumps(meta))
    frames = frames_folder(tmp_path / "frames")
    for args in (["predict", "--ckpt", str(wrong), "--input", str(frames), "--out", str(tmp_path / "pred")],
                 ["adapt", "--source-ckpt", str(wrong), "--out", str(tmp_path / "adapt")]):  # fmt: skip
        assert main(args) == 2, args
        line = one_error_line(capsys)
        assert str(wrong) in line and "model.feature_channels" in line and "'many'" in line, line


def interrupted_run(out, sets, monkeypatch) -> None:
    """A run of 4 steps killed in its third (its checkpoint holds step 2)."""
    from stpl.engine.supervised import Supervised

    step_of = Supervised.step

    def crash_in_the_third_step(self, batch, step):
        if step == 2:
            raise RuntimeError("killed")
        return step_of(self, batch, step)

    monkeypatch.setattr(Supervised, "step", crash_in_the_third_step)
    with pytest.raises(RuntimeError, match="killed"):
        main(["train-source", "--out", str(out), *set_args(sets)])
    monkeypatch.undo()


def test_resume_with_a_damaged_metrics_line(tmp_path, toy_settings, capsys, monkeypatch):
    """A damaged last line (killed while writing it) is dropped with a warning and the run resumes; a damaged line
    before it stops the resume with one line naming the file and the line, and the file is left as it was."""
    sets = [*toy_settings, "train.iterations=4", "train.checkpoint_every=2", "train.checkpoint_minutes=0",
            "train.log_every=1"]  # fmt: skip
    out = tmp_path / "run"
    interrupted_run(out, sets, monkeypatch)
    metrics = out / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 3, "lo')
    capsys.readouterr()
    assert main(["train-source", "--out", str(out), *set_args(sets)]) == 0
    assert "last line is damaged" in capsys.readouterr().err
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3, 4]

    out = tmp_path / "again"
    interrupted_run(out, sets, monkeypatch)
    metrics = out / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    damaged = "\n".join([lines[0], "not json", *lines[1:]]) + "\n"
    metrics.write_text(damaged)
    capsys.readouterr()
    assert main(["train-source", "--out", str(out), *set_args(sets)]) == 2
    line = one_error_line(capsys)
    assert str(metrics) in line and "line 2" in line
    assert metrics.read_text() == damaged


@pytest.mark.parametrize("threads", ["100000", "-3"])
def test_threads_out_of_range_is_one_line(threads, tmp_path, capsys):
    frames = frames_folder(tmp_path / "frames")
    args = ["predict", "--ckpt", "camvid-day", "--input", str(frames), "--out", str(tmp_path / "p")]
    assert main([*args, "--set", f"threads={threads}"]) == 2
    line = one_error_line(capsys)
    assert "'threads'" in line and threads in line
    assert not (tmp_path / "p").exists()


def test_tensorboard_installed_but_broken_is_one_line_before_any_work(tmp_path, toy_settings, monkeypatch, capsys):
    pytest.importorskip("tensorboard")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # found, but its import fails
    out = tmp_path / "source"
    assert main(["train-source", "--out", str(out), *set_args([*toy_settings, "log.tensorboard=true"])]) == 2
    line = one_error_line(capsys)
    assert "does not import" in line and "log.tensorboard" in line
    assert not out.exists()


def test_an_unwritable_tensorboard_folder_is_one_line(tmp_path, toy_settings, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "source"
    out.mkdir()
    (out / "tensorboard").write_text("a file where the event folder goes")
    assert main(["train-source", "--out", str(out), *set_args([*toy_settings, "log.tensorboard=true"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("stpl: error:") and str(out / "tensorboard") in err[-1], err
    assert not any("Traceback" in line or "Exception in thread" in line for line in err), err
    assert (out / "tensorboard").read_text() == "a file where the event folder goes"


def test_a_duplicate_key_in_a_config_file_is_one_line_naming_it(tmp_path, capsys):
    config = tmp_path / "twice.yaml"
    config.write_text("adapt:\n  lr: 0.1\n  iterations: 3\n  lr: 0.2\n")
    assert main(["adapt", "--source-ckpt", "camvid-day", "--config", str(config), "--out", str(tmp_path / "a")]) == 2
    line = one_error_line(capsys)
    assert str(config) in line and "'adapt.lr' appears twice" in line and "line 4" in line
    assert not (tmp_path / "a").exists()


def test_a_huge_value_is_not_repeated_whole_in_the_error(tmp_path, capsys):
    config = tmp_path / "huge.yaml"
    config.write_text("adapt:\n  method: " + "x" * 1_000_000 + "\n")
    assert main(["adapt", "--source-ckpt", "camvid-day", "--config", str(config), "--out", str(tmp_path / "a")]) == 2
    line = one_error_line(capsys)
    assert len(line) < 1100 and "adapt.method" in line and "characters left out" in line


def test_adapt_settings_without_online_adaptation_are_refused(tmp_path, capsys):
    frames = frames_folder(tmp_path / "frames")
    args = ["predict", "--ckpt", "camvid-day", "--input", str(frames), "--out", str(tmp_path / "p")]
    assert main([*args, "--set", "adapt.online.guard=true"]) == 2
    line = one_error_line(capsys)
    assert "adapt.online.guard=true" in line and "--adapt online" in line
    assert not (tmp_path / "p").exists()


def test_a_stop_after_the_new_output_is_in_place_says_so(tmp_path, monkeypatch, capsys):
    """SIGTERM while predict removes the output it replaced: exit 143, and the line says the new output is whole."""
    import shutil

    from stpl import output_folder
    from stpl.errors import Interrupted

    frames = frames_folder(tmp_path / "frames")
    out = tmp_path / "pred"
    args = ["predict", "--ckpt", "camvid-day", "--input", str(frames), "--out", str(out)]
    assert main(args) == 0
    first = (out / "predict.json").stat().st_mtime_ns
    remove = shutil.rmtree

    def stopped_while_removing_the_old_output(path, *a, **k):
        if ".old-" in str(path):
            raise Interrupted("stopped by SIGTERM", 143)
        return remove(path, *a, **k)

    monkeypatch.setattr(output_folder.shutil, "rmtree", stopped_while_removing_the_old_output)
    capsys.readouterr()
    assert main(args) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert "written in full" in err[-1] and str(out) in err[-1], err
    assert (out / "predict.json").stat().st_mtime_ns != first and (out / "predict.json").is_file()


def test_a_truncated_video_says_how_many_frames_it_gave_of_those_announced(tmp_path, capsys):
    rng = np.random.default_rng(0)
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(12):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # the header still announces 12 frames
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", "camvid-day", "--input", str(cut), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    frames = json.loads((out / "predict.json").read_text())["frames"]
    assert 0 < frames < 12 and f"{frames} frames could be decoded of the 12" in err and str(cut) in err
    assert main(["predict", "--ckpt", "camvid-day", "--input", str(whole), "--out", str(tmp_path / "p2")]) == 0
    assert "could be decoded" not in capsys.readouterr().err


def test_one_pixel_frames_predict_with_a_video_scaled_up(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    for index in range(2):
        cv2.imwrite(str(folder / f"f{index}.png"), np.full((1, 1, 3), 90 * index, np.uint8))
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", "camvid-day", "--input", str(folder), "--out", str(out)]) == 0
    summary = json.loads((out / "predict.json").read_text())
    assert summary["frames"] == 2 and summary["frame_sizes"] == [[1, 1]] and summary["overlay_video_size"] == [16, 16]
    assert cv2.imread(str(out / "masks" / "f0.png"), cv2.IMREAD_UNCHANGED).shape == (1, 1)


def test_a_frames_setting_without_the_frames_data_set_is_refused_and_input_adapts_on_the_video(tmp_path, capsys):
    frames = frames_folder(tmp_path / "frames", count=4)
    args = ["adapt", "--source-ckpt", "camvid-day", "--out", str(tmp_path / "a")]
    assert main([*args, "--set", f"data.frames.path={frames}"]) == 2
    line = one_error_line(capsys)
    assert "data.frames.path" in line and "data.dataset=frames" in line and "--input" in line
    assert not (tmp_path / "a").exists()
    sets = ["--set", "adapt.iterations=1", "--set", "adapt.batch_size=2", "--set", "adapt.estimate=false"]
    assert main([*args, "--input", str(frames), *sets]) == 0
    config = (tmp_path / "a" / "config.yaml").read_text()
    assert "dataset: frames" in config and str(frames) in config
