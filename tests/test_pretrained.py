"""Shipped models by name: `--ckpt NAME`, `--source-ckpt NAME` and `stpl.load(NAME)` resolve to the package's file."""

from __future__ import annotations

import pytest
import torch

import stpl
import stpl.pretrained
from conftest import clip, set_args, write_folder
from stpl.cli import main
from stpl.errors import StplError


@pytest.fixture
def shipped_toy(toy_checkpoint, monkeypatch) -> str:
    """The toy checkpoint shipped under the name 'toy-shipped'."""
    monkeypatch.setitem(stpl.pretrained.SHIPPED, "toy-shipped", toy_checkpoint.name)
    real = stpl.pretrained.shipped_path
    monkeypatch.setattr(
        stpl.pretrained, "shipped_path", lambda name: toy_checkpoint if name == "toy-shipped" else real(name)
    )
    return "toy-shipped"


def test_a_shipped_name_predicts_adapts_and_loads(shipped_toy, toy_checkpoint, toy_settings, tmp_path, capsys):
    frames = write_folder(tmp_path / "frames", clip(3))
    assert main(["predict", "--ckpt", shipped_toy, "--input", str(frames), "--out", str(tmp_path / "pred")]) == 0
    assert len(list((tmp_path / "pred" / "masks").glob("*.png"))) == 3
    by_name = stpl.load(shipped_toy).predict(clip(2))
    by_path = stpl.load(toy_checkpoint).predict(clip(2))
    assert all((a == b).all() for a, b in zip(by_name, by_path, strict=True))  # the same file, the same model
    out = tmp_path / "adapted"
    assert main(["adapt", "--source-ckpt", shipped_toy, "--out", str(out), *set_args(toy_settings)]) == 0
    assert (out / "model.safetensors").is_file()


def test_a_path_wins_over_a_name(shipped_toy, toy_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / shipped_toy).write_bytes(toy_checkpoint.read_bytes())
    assert stpl.pretrained.resolve_checkpoint(shipped_toy).resolve() == tmp_path / shipped_toy


def test_an_unknown_name_lists_the_shipped_models(tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", "camvid-night", "--input", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "stpl: error: checkpoint not found: camvid-night (give a checkpoint file, or a shipped model: camvid-day)"
    )
    with pytest.raises(StplError, match="shipped model: camvid-day"):
        stpl.load("camvid-night")


def test_predict_honours_set(toy_checkpoint, tmp_path, capsys):
    frames = write_folder(tmp_path / "frames", clip(2))
    args = ["predict", "--ckpt", str(toy_checkpoint), "--input", str(frames), "--out", str(tmp_path / "pred")]
    assert main([*args, "--set", "made.up=1"]) == 2
    assert "made" in capsys.readouterr().err
    before = torch.get_num_threads()
    try:
        assert main([*args, "--set", "threads=2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", list(stpl.pretrained.SHIPPED))
def test_every_shipped_model_is_whole_small_half_precision_and_predicts(name):
    import hashlib
    import json

    from stpl.engine.checkpoint import load_checkpoint

    path = stpl.pretrained.shipped_path(name)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # the record describes this file
    assert path.stat().st_size < 16 * 2**20
    weights = load_checkpoint(path).model
    floating = [value for value in weights.values() if value.is_floating_point()]
    assert floating and all(value.dtype == torch.float16 for value in floating) == (record["precision"] == "float16")
    # never trained on a frame a benchmark adapts on or scores: the 15 Hz block lies inside the excluded seconds
    assert "0016E5:7500-8700" in record["data"]["source_exclude"]
    held_out = record["held_out"]
    assert abs(held_out["mIoU_float32"] - held_out["mIoU_float16"]) <= 0.2 or record["precision"] == "float32"
    masks = stpl.load(name).predict(clip(2, 90, 120))
    assert [mask.shape for mask in masks] == [(90, 120)] * 2 and all(
        mask.max() < len(record["classes"]) for mask in masks
    )
