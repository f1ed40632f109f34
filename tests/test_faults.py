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


def scored_toy_model(tmp_path, toy_settings) -> tuple[list[str], object, str]:
    """A toy source model scored once: the eval command, its folder, and the eval.json it wrote."""
    source = tmp_path / "source"
    assert main(["train-source", "--out", str(source), *set_args(toy_settings)]) == 0
    out = tmp_path / "eval"
    args = ["eval", "--ckpt", str(source / "model.safetensors"), "--out", str(out), *set_args(toy_settings)]
    assert main(args) == 0
    return args, out, (out / "eval.json").read_text()


def test_a_full_disk_during_eval_keeps_the_earlier_result(tmp_path, toy_settings, capsys, monkeypatch):
    import errno

    import stpl.atomic

    args, out, before = scored_toy_model(tmp_path, toy_settings)
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


def rewrite_metadata(source, target, text: str) -> None:
    """A copy of checkpoint `source` whose stpl metadata is `text` (tensors unchanged)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as reader:
        tensors = {key: reader.get_tensor(key) for key in reader.keys()}  # noqa: SIM118 (not a dict)
    save_file(tensors, str(target), metadata={"stpl": text})


def damaged_metadata(meta: dict) -> dict[str, str]:
    no_config = {key: value for key, value in meta.items() if key != "config"}
    short_palette = {**meta, "palette": meta["palette"][:-1]}
    return {
        "not JSON": '{"config": {"data": ',
        "no config": json.dumps(no_config),
        "short palette": json.dumps(short_palette),
        "names not a list": json.dumps({**meta, "class_names": "road"}),
    }


@pytest.mark.parametrize("damage", ["not JSON", "no config", "short palette", "names not a list"])
def test_damaged_checkpoint_metadata_is_one_line_naming_the_file_in_every_command(
    damage, tmp_path, toy_settings, capsys
):
    from stpl.engine.checkpoint import read_meta

    source = tmp_path / "source"
    assert main(["train-source", "--out", str(source), *set_args(toy_settings)]) == 0
    good = source / "model.safetensors"
    broken = tmp_path / "broken.safetensors"
    rewrite_metadata(good, broken, damaged_metadata(read_meta(good))[damage])
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2
    import numpy as np

    for index in range(2):
        cv2.imwrite(str(frames / f"f{index}.png"), np.full((20, 30, 3), 40 * index, np.uint8))
    commands = {
        "predict": ["predict", "--ckpt", str(broken), "--input", str(frames), "--out", str(tmp_path / "pred")],
        "eval": ["eval", "--ckpt", str(broken), "--out", str(tmp_path / "eval"), *set_args(toy_settings)],
        "eval (own config)": ["eval", "--ckpt", str(broken), "--out", str(tmp_path / "eval")],
        "adapt": ["adapt", "--source-ckpt", str(broken), "--out", str(tmp_path / "adapt"), *set_args(toy_settings)],
    }
    for name, args in commands.items():
        capsys.readouterr()
        assert main(args) == 2, name
        line = one_error_line(capsys)
        assert str(broken) in line and ("metadata" in line), (name, line)
    import stpl

    with pytest.raises(StplError, match="metadata"):
        stpl.load(broken)


def test_nan_weights_are_refused_by_predict_and_adapt(tmp_path, toy_settings, capsys):
    import numpy as np
    import torch

    from stpl.engine.checkpoint import load_checkpoint, save_checkpoint

    source = tmp_path / "source"
    assert main(["train-source", "--out", str(source), *set_args(toy_settings)]) == 0
    checkpoint = load_checkpoint(source / "model.safetensors")
    weights = {name: torch.full_like(value, float("nan")) if value.is_floating_point() else value
               for name, value in checkpoint.model.items()}  # fmt: skip
    broken = tmp_path / "nan.safetensors"
    save_checkpoint(broken, weights, checkpoint.meta)
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2

    cv2.imwrite(str(frames / "a.png"), np.zeros((20, 30, 3), np.uint8))
    for args in (
        ["predict", "--ckpt", str(broken), "--input", str(frames), "--out", str(tmp_path / "pred")],
        ["adapt", "--source-ckpt", str(broken), "--out", str(tmp_path / "adapt"), *set_args(toy_settings)],
    ):
        capsys.readouterr()
        assert main(args) == 2
        assert "non-finite weights" in one_error_line(capsys)
    assert not (tmp_path / "pred").exists() and not (tmp_path / "adapt").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--seeds", "0,0"], "repeats 0"),
        (["--seeds", "1,-1"], "non-negative"),
        (["--set", "seed=-1"], "'seed' must not be negative"),
        (["--reuse-source", "no/such/bench"], "no bench folder with source models"),
    ],
)
def test_bad_bench_seeds_and_reuse_paths_are_refused_before_any_work(args, words, tmp_path, capsys):
    out = tmp_path / "bench"
    capsys.readouterr()
    assert main(["bench", "--benchmark", "synthetic", "--methods", "source-only", "--out", str(out), *args]) == 2
    assert words in one_error_line(capsys)
    assert not out.exists()


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    config = tmp_path / "model.safetensors"  # a binary file given as --config by mistake
    config.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe binary")
    assert main(["show-config", "--config", str(config)]) == 2
    assert "is not UTF-8 text" in one_error_line(capsys)


def test_a_yaml_syntax_error_is_one_line_with_its_place(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("adapt:\n  lr: 0.1\n  iterations: [1, 2\n")
    assert main(["show-config", "--config", str(config)]) == 2
    line = one_error_line(capsys)
    assert "not valid YAML" in line and "at line 4" in line


def test_permission_denied_is_not_reported_as_missing(tmp_path, capsys, monkeypatch):
    import os

    config = tmp_path / "locked" / "c.yaml"

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "stat", denied)  # a folder without search permission (chmod cannot stop root)
    assert main(["show-config", "--config", str(config)]) == 2
    line = one_error_line(capsys)
    assert "Permission denied" in line and "not found" not in line and str(config) in line


def test_an_unwritable_storage_dir_is_one_line(tmp_path, toy_settings, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = tmp_path / "run"
    sets = [*toy_settings, "data.storage=disk", f"data.storage_dir={blocker / 'scratch'}"]
    capsys.readouterr()
    assert main(["train-source", "--out", str(out), *set_args(sets)]) == 2
    line = one_error_line(capsys)
    assert f"data.storage_dir {blocker / 'scratch'}" in line and "Not a directory" in line
    assert not out.exists()


def test_an_os_error_deep_in_a_command_names_the_path_and_cause(tmp_path, toy_settings, capsys, monkeypatch):
    import stpl.workflows

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/data/frames/0001.png")

    monkeypatch.setattr(stpl.workflows, "build_dataset", unreadable)
    capsys.readouterr()
    assert main(["train-source", "--out", str(tmp_path / "run"), *set_args(toy_settings)]) == 2
    assert one_error_line(capsys) == "stpl: error: cannot access /data/frames/0001.png: Permission denied"


def test_a_full_disk_when_eval_takes_its_lock_is_one_line_and_keeps_the_result(
    tmp_path, toy_settings, capsys, monkeypatch
):
    import errno

    import stpl.runlock

    args, out, before = scored_toy_model(tmp_path, toy_settings)

    def full_disk(descriptor, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(stpl.runlock.os, "write", full_disk)
    capsys.readouterr()
    assert main(args) == 2
    assert one_error_line(capsys) == f"stpl: error: cannot write lock file {out / '.lock'}: No space left on device"
    monkeypatch.undo()
    assert (out / "eval.json").read_text() == before and sorted(p.name for p in out.iterdir()) == ["eval.json"]
