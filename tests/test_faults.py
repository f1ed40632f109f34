"""Faults and bad input stop with one `stpl: error:` line and exit 2, leaving earlier results intact."""

import json

import pytest

from stpl.cli import main
from stpl.config import build_config
from stpl.engine.run_files import LAST_CHECKPOINT
from stpl.errors import StplError


def set_args(settings):
    return [arg for s in settings for arg in ("--set", s)]


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("1e30", 1e30), (".5", 0.5), ("2", 2.0), ("1.0e-4", 1e-4)])
def test_numbers_in_set_options_read_as_numbers(text, value):
    assert build_config(sets=[f"adapt.lr={text}"]).adapt.lr == value


@pytest.mark.parametrize(
    "setting, words",
    [
        ("train.lr=.nan", "finite"),
        ("adapt.lr=.inf", "finite"),
        ("adapt.lr=-1e-3", "positive"),
        ("train.lr=0", "positive"),
        ("adapt.momentum=1.0", "[0, 1)"),
        ("train.weight_decay=-1", "negative"),
        ("adapt.lambda_contrast=-0.1", "negative"),
        ("adapt.later_error_limit=-1", "negative"),
        ("train.lr=fast", "expected a number"),
    ],
)
def test_bad_numbers_are_refused_with_the_key(setting, words):
    with pytest.raises(StplError) as err:
        build_config(sets=[setting])
    assert setting.split("=")[0] in str(err.value) and words in str(err.value)


@pytest.mark.parametrize("command", ["train-source", "adapt"])
def test_a_diverging_run_stops_with_exit_2_and_writes_no_model(command, tmp_path, toy_settings, capsys):
    source = tmp_path / "source"
    if command == "adapt":
        assert main(["train-source", "--out", str(source), *set_args(toy_settings)]) == 0
        args = ["adapt", "--source-ckpt", str(source / "model.safetensors"), "--set", "adapt.lr=1e30"]
        args += ["--set", "adapt.iterations=4", "--set", "adapt.checkpoint_every=1", "--set", "adapt.method=tent"]
    else:
        args = ["train-source", "--set", "train.lr=1e30", "--set", "train.checkpoint_every=1"]
    out = tmp_path / "run"
    capsys.readouterr()
    command_line, options = args[:1], args[1:]
    assert main([*command_line, "--out", str(out), *set_args(toy_settings), *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # progress lines, then the error
    errors = [line for line in err if line.startswith("stpl: error:")]
    assert errors == err[-1:] and "diverged at step" in errors[0] and "not finite" in errors[0], err
    if command == "adapt":  # a checkpoint every step: the last good one is named and kept
        assert "the last checkpoint" in errors[0] and (out / LAST_CHECKPOINT).is_file()
    assert not (out / "model.safetensors").exists()  # nothing that could be scored as a result
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"non-strict JSON token {name}"))


def test_eval_refuses_a_checkpoint_with_non_finite_weights(tmp_path, toy_settings, capsys):
    import torch

    from stpl.engine.checkpoint import load_checkpoint, save_checkpoint

    source = tmp_path / "source"
    assert main(["train-source", "--out", str(source), *set_args(toy_settings)]) == 0
    checkpoint = load_checkpoint(source / "model.safetensors")
    weights = dict(checkpoint.model)
    name = next(key for key, value in weights.items() if value.is_floating_point())
    weights[name] = torch.full_like(weights[name], float("nan"))
    broken = tmp_path / "broken.safetensors"
    save_checkpoint(broken, weights, checkpoint.meta)
    capsys.readouterr()
    out = tmp_path / "eval"
    assert main(["eval", "--ckpt", str(broken), "--out", str(out), *set_args(toy_settings)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stpl: error:") and "non-finite weights" in err and "\n" not in err
    assert not (out / "eval.json").exists()


def test_a_full_disk_during_eval_keeps_the_earlier_result(tmp_path, toy_settings, capsys, monkeypatch):
    import errno

    import stpl.atomic

    source = tmp_path / "source"
    assert main(["train-source", "--out", str(source), *set_args(toy_settings)]) == 0
    out = tmp_path / "eval"
    args = ["eval", "--ckpt", str(source / "model.safetensors"), "--out", str(out), *set_args(toy_settings)]
    assert main(args) == 0
    before = (out / "eval.json").read_text()
    json.loads(before, parse_constant=lambda name: pytest.fail(f"non-strict JSON token {name}"))

    def full_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(stpl.atomic, "_flush_to_disk", full_disk)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"stpl: error: cannot write {out / 'eval.json'}: No space left on device"
    assert (out / "eval.json").read_text() == before  # the earlier result, whole
    assert sorted(p.name for p in out.iterdir()) == ["eval.json"]  # no temporary file left behind


def test_a_full_disk_at_a_checkpoint_is_one_line(tmp_path, toy_settings, capsys, monkeypatch):
    import errno

    import stpl.atomic

    flush = stpl.atomic._flush_to_disk

    def full_disk_for_checkpoints(path):
        if ".safetensors." in path:
            raise OSError(errno.ENOSPC, "No space left on device")
        flush(path)

    monkeypatch.setattr(stpl.atomic, "_flush_to_disk", full_disk_for_checkpoints)
    out = tmp_path / "source"
    capsys.readouterr()
    assert main(["train-source", "--out", str(out), *set_args(toy_settings)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"stpl: error: cannot write {out / LAST_CHECKPOINT}: No space left on device"
    assert not any(line.startswith("Traceback") for line in err)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("stpl: error:") and not any("Traceback" in line for line in err), err
    assert not any(line.startswith("stpl: error:") for line in err[:-1])
    return err[-1]


def test_a_pickle_file_as_imagenet_weights_is_refused_and_leaves_nothing(tmp_path, capsys):
    import pickle

    evil = tmp_path / "weights.pth"
    evil.write_bytes(pickle.dumps({"not": "tensors"}))
    out = tmp_path / "run"
    capsys.readouterr()
    args = ["train-source", "--out", str(out), "--set", "model.backbone=mobilenet_v2"]
    assert (
        main([*args, "--set", f"model.weights_path={evil}", "--set", "data.height=33", "--set", "data.width=47"]) == 2
    )
    line = one_error_line(capsys)
    assert str(evil) in line and "more than tensors" in line and "weights_only=False" not in line
    assert not out.exists()  # a refused run leaves no folder (nor config.yaml) behind


def test_a_checkpoint_that_does_not_fit_says_how(tmp_path, toy_settings, capsys):
    import torch

    from stpl.engine.checkpoint import load_checkpoint, save_checkpoint

    source = tmp_path / "source"
    assert main(["train-source", "--out", str(source), *set_args(toy_settings)]) == 0
    checkpoint = load_checkpoint(source / "model.safetensors")
    weights = dict(checkpoint.model)
    dropped = sorted(weights)[0]
    del weights[dropped]
    reshaped = next(name for name, value in sorted(weights.items()) if value.ndim == 4)
    weights[reshaped] = torch.zeros(1, 1, 1, 1)
    changed = tmp_path / "changed.safetensors"
    save_checkpoint(changed, weights, checkpoint.meta)
    out = tmp_path / "adapted"
    capsys.readouterr()
    assert main(["adapt", "--source-ckpt", str(changed), "--out", str(out), *set_args(toy_settings)]) == 2
    line = one_error_line(capsys)
    assert "does not fit the model" in line and f"1 tensors missing ({dropped})" in line
    assert f"1 of another shape ({reshaped} [1, 1, 1, 1] in the file" in line
    assert not out.exists()


def test_an_empty_source_split_is_one_line(tmp_path, capsys):
    import cv2
    import numpy as np

    root = tmp_path / "camvid"
    (root / "train").mkdir(parents=True)
    (root / "trainannot").mkdir()
    for frame in (30, 60):
        cv2.imwrite(str(root / "train" / f"SeqA_{frame:06d}.png"), np.zeros((36, 48, 3), np.uint8))
        cv2.imwrite(str(root / "trainannot" / f"SeqA_{frame:06d}.png"), np.zeros((36, 48), np.uint8))
    (root / "train.txt").write_text("".join(f"train/SeqA_{f:06d}.png trainannot/SeqA_{f:06d}.png\n" for f in (30, 60)))
    (root / "test.txt").write_text("train/SeqA_000060.png trainannot/SeqA_000060.png\n")
    out = tmp_path / "run"
    sets = ["data.dataset=camvid", f"data.camvid.root={root}", "data.camvid.source_sequences=[SeqA]",
            "data.camvid.source_exclude=[SeqA:0-100]", "data.camvid.target_sequence=SeqA", "data.height=18",
            "data.width=24", f"flow.cache_dir={tmp_path / 'flow'}"]  # fmt: skip
    capsys.readouterr()
    assert main(["train-source", "--out", str(out), *set_args(sets)]) == 2
    assert "no frames selected for split 'source'" in one_error_line(capsys)
    assert not out.exists()
