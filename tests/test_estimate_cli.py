"""`stpl estimate` end to end at toy size: one's own frames, several checkpoints ranked, a collapsed one last."""

import json

import pytest

from conftest import clip, write_folder
from stpl.cli import main
from stpl.engine.checkpoint import load_checkpoint


def test_estimate_ranks_checkpoints_on_own_frames(toy_checkpoint, collapsed_checkpoint, tmp_path, capsys):
    frames = write_folder(tmp_path / "frames", clip(5))
    args = ["estimate", "--ckpt", str(collapsed_checkpoint), "--ckpt", str(toy_checkpoint),
            "--source", str(toy_checkpoint), "--input", str(frames), "--out", str(tmp_path / "out"),
            "--set", f"flow.cache_dir={tmp_path / 'flow'}"]  # fmt: skip
    assert main(args) == 0
    result = json.loads((tmp_path / "out" / "estimate.json").read_text())
    assert result["frames"] == 5 and result["reference"] == str(toy_checkpoint)
    names = [row["name"] for row in result["models"]]
    assert names == [str(toy_checkpoint), str(collapsed_checkpoint)]  # best first: the collapsed model last
    top, collapsed = result["models"]
    assert top["parts"]["source_miou"] == pytest.approx(1.0)  # the reference agrees with itself
    assert collapsed["parts"]["class_coverage"] <= 1 / top["parts"]["reference_classes"] + 1e-9
    assert collapsed["estimate"] < top["estimate"]
    assert f"best by the label-free estimate: {toy_checkpoint}" in capsys.readouterr().out


def test_estimate_without_a_source_says_so(toy_checkpoint, tmp_path, capsys):
    frames = write_folder(tmp_path / "frames", clip(3))
    args = ["estimate", "--ckpt", str(toy_checkpoint), "--input", str(frames),
            "--set", f"flow.cache_dir={tmp_path / 'flow'}"]  # fmt: skip
    assert main(args) == 0
    assert "no source model" in capsys.readouterr().out


def test_estimate_refuses_a_missing_input(toy_checkpoint, tmp_path, capsys):
    assert main(["estimate", "--ckpt", str(toy_checkpoint), "--input", str(tmp_path / "nothing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_predict_json_carries_the_estimate_and_collapse_scores_low(toy_checkpoint, collapsed_checkpoint, tmp_path):
    frames = write_folder(tmp_path / "frames", clip(5))
    estimates = {}
    for name, checkpoint in (("healthy", toy_checkpoint), ("collapsed", collapsed_checkpoint)):
        out = tmp_path / name
        assert main(["predict", "--ckpt", str(checkpoint), "--input", str(frames), "--out", str(out)]) == 0
        estimates[name] = json.loads((out / "predict.json").read_text())["estimate"]
    classes = estimates["healthy"]["parts"]["reference_classes"]
    assert classes == len(load_checkpoint(toy_checkpoint).class_names)  # no reference: every class counts
    assert estimates["collapsed"]["estimate"] <= 100.0 / classes + 1e-9  # one class of all: 1/K at most
    assert 0.0 <= estimates["healthy"]["estimate"] <= 100.0
