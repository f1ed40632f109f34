"""The online label-free guard (online.EstimateGuard, analysis/label_free.StreamScores): by hand, a model that
flickers is sent back to its start, a model as good as its start is not, and predict.json records the checks."""

import json

import pytest
import torch

from conftest import clip, write_folder
from stpl.analysis.label_free import StreamScores
from stpl.cli import main
from stpl.data.pairs import PairBatch
from stpl.models.segmenter import SegmenterOutput
from stpl.online import EstimateGuard
from test_label_free import ColourModel, moving_squares


def output_of(logits: torch.Tensor, warped: torch.Tensor) -> SegmenterOutput:
    valid = torch.ones(logits.shape[0], *logits.shape[-2:], dtype=torch.bool)
    return SegmenterOutput(logits, logits, warped, valid, logits[:, :1], logits[:, :1])


def one_hot(classes: list[list[int]], num_classes: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(classes), num_classes).permute(2, 0, 1)[None].float()


def test_stream_scores_by_hand():
    """Reference: (0, 1 / 1, 2), consistent in time. Model: the same frame t, but its warped earlier frame says
    class 0 everywhere: temporal IoU class 0 = 1/4, classes 1 and 2 = 0 -> 1/12; the reference scores 1."""
    frame = one_hot([[0, 1], [1, 2]])
    scores = StreamScores(3)
    scores.add(output_of(frame, one_hot([[0, 0], [0, 0]])), output_of(frame, frame), has_earlier=True)
    result = scores.result()
    assert result["parts"]["temporal_miou"] == pytest.approx(1 / 12)
    assert result["reference_estimate"] == pytest.approx(100.0)
    assert result["estimate"] == pytest.approx(100 / 12)
    first = StreamScores(3)  # a stream's first frame says nothing about time
    first.add(output_of(frame, one_hot([[0, 0], [0, 0]])), output_of(frame, frame), has_earlier=False)
    assert first.result()["parts"]["temporal_miou"] == 0.0 and first.counts()["temporal"] == [[0.0] * 3] * 3


class Flicker(ColourModel):
    """The colour model whose prediction of the earlier frame is shifted by one class: it never agrees in time."""

    def forward(self, current, previous, flow):
        output = super().forward(current, previous, flow)
        output.warped_logits = output.warped_logits.roll(1, dims=1)
        return output


def guard_resets(model_output: type[ColourModel], window: int = 2) -> list[bool]:
    start = ColourModel()
    start.num_classes = 5
    guard = EstimateGuard(start, window=window, margin=1.0)
    adapted = model_output()
    data = moving_squares()
    said = []
    for index in range(len(data)):
        batch: PairBatch = data.batch([index])
        said.append(guard.observe(batch, adapted(batch.current, batch.previous, batch.flow), has_earlier=True))
    assert len(guard.checks) == len(data) // window
    return said


def test_the_guard_resets_a_model_that_flickers_and_keeps_one_as_good_as_its_start():
    assert guard_resets(Flicker) == [False, True, False, True]  # a check after every second frame
    assert guard_resets(ColourModel) == [False, False, False, False]


def test_predict_online_records_the_guard(toy_checkpoint, tmp_path):
    frames = write_folder(tmp_path / "frames", clip(6))
    out = tmp_path / "online"
    args = ["predict", "--ckpt", str(toy_checkpoint), "--input", str(frames), "--out", str(out), "--adapt", "online",
            "--method", "tent", "--set", "adapt.online.guard=true", "--set", "adapt.online.guard_window=2",
            "--set", "adapt.lr=1000"]  # fmt: skip
    assert main(args) == 0
    online = json.loads((out / "predict.json").read_text())["online"]
    assert len(online["guard_checks"]) == 3
    for check in online["guard_checks"]:
        assert check["reset"] == (check["adapted"] < check["start"] - 1.0)
    assert len(online["resets_after"]) == sum(check["reset"] for check in online["guard_checks"])
