"""`stpl export --format onnx`: onnxruntime reproduces torch's logits, single-frame and two-frame, and the file says
what its inputs and classes are."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import stpl
from conftest import clip, make_tiny_model
from stpl.cli import main
from stpl.constants import IMAGENET_MEAN, IMAGENET_STD
from stpl.engine.checkpoint import load_checkpoint
from stpl.engine.checkpoint_model import model_for_checkpoint
from stpl.errors import StplError
from stpl.export import export_model, onnx_session
from stpl.models.segmenter import upsample
from stpl.predict import Predictor
from stpl.speed import onnxruntime_single_frame

# onnxruntime and torch run the same float32 graph with different kernels (summation order, fused conv + batch
# norm), so they agree to rounding: ~1e-7 relative per operation, ~1e-6 on these logits of size ~1-10 after a dozen
# layers. 1e-4 is two orders above that and far below any real fault (a wrong operator or a missed mask moves logits
# by whole units).
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(toy_checkpoint, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("export")
    paths = {"single": out / "single.onnx", "temporal": out / "temporal.onnx"}
    assert main(["export", "--ckpt", str(toy_checkpoint), "--out", str(paths["single"])]) == 0
    assert main(["export", "--ckpt", str(toy_checkpoint), "--temporal", "--out", str(paths["temporal"])]) == 0
    return paths


@pytest.fixture(scope="module")
def toy_model(toy_checkpoint):
    model, config = model_for_checkpoint(load_checkpoint(toy_checkpoint))
    return model, (config.data.height, config.data.width)


def frames(batch: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def run(path: Path, **inputs: torch.Tensor) -> np.ndarray:
    return onnx_session(path, threads=1).run(["logits"], {k: v.numpy() for k, v in inputs.items()})[0]


@torch.no_grad()
def test_single_frame_model_gives_the_predictors_logits_at_the_input_size(exported, toy_model):
    model, size = toy_model
    for batch in (1, 4):  # the batch dimension is dynamic (the export's example had 2)
        image = frames(batch, size, seed=batch)
        # What `stpl predict` computes for a frame with no earlier frame: paired with itself, zero flow.
        expected = upsample(model(image, image, torch.zeros(batch, 2, *size)).logits, size).numpy()
        found = run(exported["single"], image=image)
        assert found.shape == (batch, model.num_classes, *size) == expected.shape
        assert np.abs(found - expected).max() < TOLERANCE


@torch.no_grad()
def test_two_frame_model_matches_torch_with_flow_leading_outside_the_frame(exported, toy_model):
    model, size = toy_model
    current, previous = frames(3, size, seed=10), frames(3, size, seed=11)
    # Up to 60% of the frame each way: many pixels come from outside the earlier frame (fallback to the current).
    extent = torch.tensor([size[1], size[0]], dtype=torch.float32).view(1, 2, 1, 1)
    flow = (torch.rand(3, 2, *size, generator=torch.Generator().manual_seed(12)) - 0.5) * 1.2 * extent
    output = model(current, previous, flow)
    assert 0.1 < output.valid.float().mean() < 0.9  # both paths of the validity mask are taken
    expected = upsample(output.logits, size).numpy()
    found = run(exported["temporal"], current=current, previous=previous, flow=flow)
    assert np.abs(found - expected).max() < TOLERANCE
    # The flow matters: with zero flow the answer differs (the input is not ignored).
    still = run(exported["temporal"], current=current, previous=previous, flow=torch.zeros_like(flow))
    assert np.abs(still - found).max() > 1e-3


@torch.no_grad()
def test_odd_sizes_export_and_match(tmp_path):
    model = make_tiny_model(num_classes=3).eval()
    size = (29, 51)  # neither a multiple of the stride (8) nor even
    exported = export_model(model, tmp_path / "odd.onnx", size, ["a", "b", "c"], temporal=True)
    current, previous = frames(2, size, seed=20), frames(2, size, seed=21)
    flow = torch.randn(2, 2, *size, generator=torch.Generator().manual_seed(22)) * 10
    expected = upsample(model(current, previous, flow).logits, size).numpy()
    found = run(exported.path, current=current, previous=previous, flow=flow)
    assert found.shape == (2, 3, *size)
    assert np.abs(found - expected).max() < TOLERANCE
    assert exported.max_difference < TOLERANCE  # the export's own check agreed


def test_metadata_names_classes_normalisation_and_inputs(exported, toy_checkpoint):
    for kind, inputs in (("single", ["image"]), ("temporal", ["current", "previous", "flow"])):
        model = onnx.load(str(exported[kind]))
        props = {p.key: p.value for p in model.metadata_props}
        assert json.loads(props["class_names"]) == load_checkpoint(toy_checkpoint).class_names
        normalization = json.loads(props["normalization"])
        assert normalization["mean"] == list(IMAGENET_MEAN) and normalization["std"] == list(IMAGENET_STD)
        assert json.loads(props["input_size"]) == {"height": 33, "width": 47}
        assert list(json.loads(props["inputs"])) == inputs
        assert [i.name for i in model.graph.input] == inputs and [o.name for o in model.graph.output] == ["logits"]
        assert {i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input} == {"batch"}  # dynamic


def test_missing_checkpoint_and_unknown_format_are_one_line_errors(toy_checkpoint, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    for args, message in (
        (["--ckpt", str(tmp_path / "nope.safetensors")], "checkpoint not found"),
        (["--ckpt", str(toy_checkpoint), "--format", "tflite"], "unknown export format 'tflite'"),
    ):
        assert main(["export", *args, "--out", str(out)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("stpl: error:") and message in lines[0]
    assert not out.exists()


def test_missing_onnxruntime_says_how_to_install(monkeypatch):
    from stpl.export import require_onnx

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(StplError, match=r"pip install 'stpl\[export\]'"):
        require_onnx()


def test_speeds_onnxruntime_row_predicts_what_the_torch_predictor_does(toy_model):
    model, size = toy_model
    classes = [f"c{i}" for i in range(model.num_classes)]
    frames = [cv2.resize(frame, (size[1], size[0])) for frame in clip(3)]  # speed's clip is at the model size
    onnx_maps = onnxruntime_single_frame(model, size, classes)(frames)
    torch_maps = Predictor(model, classes, size, temporal=False).predict(frames)
    for found, expected in zip(onnx_maps, torch_maps, strict=True):
        # argmax may differ only where two logits tie within rounding: a few pixels at most
        assert found.shape == expected.shape and (found == expected).mean() > 0.99


def test_the_documented_onnx_example_predicts_what_stpl_predict_does(exported, toy_checkpoint, tmp_path, monkeypatch):
    commands = (Path(__file__).resolve().parents[1] / "docs" / "commands.md").read_text()
    example = re.search(r"`stpl export` writes.*?```python\n(.*?)```", commands, re.S).group(1)
    frame = clip(1)[0]  # 41x57: the example resizes it to the model's 33x47
    shutil.copy(exported["single"], tmp_path / "model.onnx")  # the name the example opens
    monkeypatch.chdir(tmp_path)
    namespace = {"frame": frame, "onnxruntime": onnxruntime, "json": json, "cv2": cv2, "np": np}
    exec(example, namespace)
    expected = stpl.load(toy_checkpoint).predict(cv2.resize(frame, (47, 33), interpolation=cv2.INTER_AREA))
    assert (namespace["classes"] == expected).mean() > 0.99  # as above: ties within rounding may flip a pixel


def test_export_never_overwrites_a_file_it_did_not_write_and_replaces_its_own(exported, toy_checkpoint, tmp_path,
                                                                             capsys):  # fmt: skip
    mine = tmp_path / "notes.onnx"
    mine.write_text("the user's own file")
    assert main(["export", "--ckpt", str(toy_checkpoint), "--out", str(mine)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(mine) in line and "not an ONNX model stpl exported" in line
    assert mine.read_text() == "the user's own file"
    again = tmp_path / "again.onnx"
    shutil.copy(exported["single"], again)
    stale = tmp_path / ".again.onnx.k1ll3d.tmp"  # what an export killed while writing leaves
    stale.write_bytes(b"\0" * 1000)
    assert main(["export", "--ckpt", str(toy_checkpoint), "--out", str(again)]) == 0
    assert not stale.exists() and "removed" in capsys.readouterr().err
    assert any(prop.key == "stpl_version" for prop in onnx.load(str(again)).metadata_props)


def test_ctrl_c_inside_the_exporter_exits_130(toy_checkpoint, tmp_path, monkeypatch, capsys):
    """torch's exporter wraps what interrupts it in its own error: Ctrl-C must still read as a stop."""

    def interrupted_export(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            raise torch.onnx.errors.OnnxExporterError("\x1b[1mFailed to export\x1b[0m") from err

    monkeypatch.setattr(torch.onnx, "export", interrupted_export)
    out = tmp_path / "model.onnx"
    assert main(["export", "--ckpt", str(toy_checkpoint), "--out", str(out)]) == 130
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_an_export_failure_is_one_line_without_terminal_colours(toy_checkpoint, tmp_path, monkeypatch, capsys):
    def failing_export(*args, **kwargs):
        raise torch.onnx.errors.OnnxExporterError("\x1b[31mUnsupported operator\x1b[0m\nmore report")

    monkeypatch.setattr(torch.onnx, "export", failing_export)
    assert main(["export", "--ckpt", str(toy_checkpoint), "--out", str(tmp_path / "m.onnx")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == "stpl: error: ONNX export failed: Unsupported operator"
