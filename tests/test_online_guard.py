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


def guard_said(adapted_model: type[ColourModel], window: int = 2, starts: dict | None = None) -> list:
    """What the guard says after each frame of `moving_squares` predicted by `adapted_model` (normalising with
    the stored statistics): None, or the share of frame statistics to go back with. `starts`: the starting copies
    by share (default: the colour model, which has no batch norm, so only the stored-statistics copy)."""
    start = ColourModel()
    start.num_classes = 5
    guard = EstimateGuard(start, window=window, margin=1.0)
    if starts is not None:
        guard.starts = starts
        guard._new_window()
    adapted = adapted_model()
    data = moving_squares()
    said = []
    for index in range(len(data)):
        batch: PairBatch = data.batch([index])
        output = adapted(batch.current, batch.previous, batch.flow)
        said.append(guard.observe(batch, output, has_earlier=True, share=0.0))
    assert len(guard.checks) == len(data) // window
    return said


def test_the_guard_resets_a_model_that_flickers_and_keeps_one_as_good_as_its_start():
    assert guard_said(Flicker) == [None, 0.0, None, 0.0]  # a check after every second frame: back, stored statistics
    assert guard_said(ColourModel) == [None, None, None, None]


def test_the_guard_chooses_the_normalisation_whose_starting_copy_scores_better():
    """Starting copies by hand: with the stored statistics the start flickers, with each frame's own it does not.
    A model as good as the stored copy is below the frame-statistics copy: back, with frame statistics. With both
    copies as good as the model, it stays."""
    assert guard_said(Flicker, starts={0.0: Flicker(), 1.0: ColourModel()}) == [None, 1.0, None, 1.0]
    assert guard_said(ColourModel, starts={0.0: ColourModel(), 1.0: ColourModel()}) == [None] * 4
    assert guard_said(ColourModel, starts={0.0: ColourModel(), 1.0: Flicker()}) == [None] * 4


class SaysFrameStatistics:
    """A guard that, at every frame, sends the model back with each frame's own statistics."""

    def __init__(self):
        self.checks: list = []

    def observe(self, batch, output, has_earlier, share):
        return 1.0


def test_an_online_model_sent_back_with_frame_statistics_predicts_with_them_and_so_does_its_teacher():
    from conftest import make_tiny_model
    from stpl.adapt.frame_statistics import frame_share
    from stpl.config import build_config
    from stpl.online import OnlineAdapter

    config = build_config(sets=["adapt.method=stpl", "adapt.online.guard=true"]).adapt
    adapter = OnlineAdapter(make_tiny_model(), config)
    assert frame_share(adapter.model) == 0.0 and sorted(adapter.guard.starts) == [0.0, 1.0]
    assert frame_share(adapter.guard.starts[0.0]) == 0.0 and frame_share(adapter.guard.starts[1.0]) == 1.0
    adapter.guard = SaysFrameStatistics()
    output = SegmenterOutput(*(torch.zeros(1, 5, 4, 4),) * 3, torch.ones(1, 4, 4, dtype=torch.bool),
                             torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))  # fmt: skip
    adapter.observe(output, has_earlier=True, batch=object())
    assert adapter.resets == [0] and frame_share(adapter.model) == 1.0
    teacher = adapter.method.teacher.model  # the EMA teacher, a copy made at the reset
    assert teacher is not adapter.model and frame_share(teacher) == 1.0


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
        best = max(check["start_stored_statistics"], check["start_frame_statistics"])
        assert check["reset"] == (check["adapted"] < best - 1.0)
        assert check["start"] == check["start_stored_statistics"]  # tent online: the stored statistics
    assert len(online["resets_after"]) == sum(check["reset"] for check in online["guard_checks"])


class AlwaysFalls:
    """A guard that judges every frame and finds the model below its stored-statistics copy each time."""

    def __init__(self):
        self.checks: list = []

    def observe(self, batch, output, has_earlier, share):
        self.checks.append({"reset": True})
        return 0.0


def test_two_falls_in_a_row_pause_adapting_for_guard_hold_frames():
    from conftest import make_tiny_model
    from stpl.config import build_config
    from stpl.online import OnlineAdapter

    config = build_config(sets=["adapt.method=tent", "adapt.online.guard=true", "adapt.online.guard_hold=3"]).adapt
    adapter = OnlineAdapter(make_tiny_model(), config)
    adapter.guard = AlwaysFalls()
    output = SegmenterOutput(*(torch.zeros(1, 5, 4, 4),) * 3, torch.ones(1, 4, 4, dtype=torch.bool),
                             torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))  # fmt: skip
    holding = []
    for _ in range(8):
        adapter.observe(output, has_earlier=True, batch=object())
        holding.append(adapter.holding())
    # frame 0: first fall (reset); frame 1: second in a row -> pause frames 2, 3, 4; the falls judged while paused
    # do not count; frame 5 adapts again and falls (one), frame 6 the second -> pause again
    assert adapter.holds == [1, 6] and adapter.resets == list(range(8))
    assert holding == [False, True, True, True, False, False, True, True]
    assert adapter.update(None) == {}  # paused: no step is taken (the batch is not even read)


def test_the_guard_that_keeps_the_normalisation_goes_back_with_the_models_own():
    """The case of the test above where choosing sends the model back with frame statistics (its stored copy
    flickers, the frame-statistics copy does not): with guard_normalisation "keep" the frame-statistics copy is no
    way back, and a model as good as its own (stored) copy stays."""

    def said(choose: bool) -> list:
        start = ColourModel()
        start.num_classes = 5
        guard = EstimateGuard(start, window=2, margin=1.0, choose=choose)
        guard.starts = {0.0: Flicker(), 1.0: ColourModel()}
        guard._new_window()
        data, answers = moving_squares(), []
        for index in range(len(data)):
            batch = data.batch([index])
            answers.append(guard.observe(batch, Flicker()(batch.current, batch.previous, batch.flow), True, 0.0))
        return answers

    assert said(choose=True) == [None, 1.0, None, 1.0]
    assert said(choose=False) == [None] * 4
