"""A training run under faults: non-finite numbers provoked on purpose (never by hoping a learning rate
overflows), collapsed predictions, interruptions, leftovers of a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from conftest import set_args
from stpl.adapt.tent import Tent
from stpl.cli import main
from stpl.engine.checkpoint import load_checkpoint, read_meta
from stpl.engine.run_files import LAST_CHECKPOINT
from stpl.engine.supervised import Supervised

METHOD_OF = {"train-source": Supervised, "adapt": Tent}


class NanGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradients are not."""

    @staticmethod
    def forward(ctx, value):
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def inject_fault(monkeypatch, method_class, kind: str, at_step: int) -> None:
    """Make the run's step `at_step` (0-based) produce a non-finite loss, gradient or weight."""
    step_of = method_class.step

    def step(self, batch, step):
        values = step_of(self, batch, step)
        if step == at_step:
            key = next(k for k in values if k.startswith("loss_"))
            if kind == "loss":
                values = {**values, key: values[key] * float("nan")}
            elif kind == "gradients":
                values = {**values, key: NanGradient.apply(values[key])}
            elif kind == "weights":
                self._poison_next = True
        return values

    def after_step(self):
        if getattr(self, "_poison_next", False):
            next(p for p in self.model.parameters() if p.requires_grad).data.fill_(float("inf"))
            self._poison_next = False

    monkeypatch.setattr(method_class, "step", step)
    monkeypatch.setattr(method_class, "after_step", after_step)


@pytest.fixture
def source_model(tmp_path, toy_settings):
    source = tmp_path / "source"
    assert main(["train-source", "--out", str(source), *set_args(toy_settings)]) == 0
    return source / "model.safetensors"


def command_args(command: str, source_model=None) -> list[str]:
    if command == "adapt":
        return ["adapt", "--source-ckpt", str(source_model), "--method", "tent"]
    return ["train-source"]


@pytest.mark.parametrize("kind", ["loss", "gradients", "weights"])
@pytest.mark.parametrize("command", ["train-source", "adapt"])
def test_a_diverging_run_stops_with_exit_2_and_writes_no_model(
    command, kind, tmp_path, toy_settings, capsys, monkeypatch
):
    source = None
    if command == "adapt":
        source = tmp_path / "source"
        assert main(["train-source", "--out", str(source), *set_args(toy_settings)]) == 0
        source = source / "model.safetensors"
    inject_fault(monkeypatch, METHOD_OF[command], kind, at_step=2)  # the third step; a checkpoint after each
    out = tmp_path / "run"
    sets = [*toy_settings, "train.iterations=5", "adapt.iterations=5", "train.checkpoint_every=1"]
    sets += ["adapt.checkpoint_every=1", "train.log_every=1"]
    capsys.readouterr()
    assert main([*command_args(command, source), "--out", str(out), *set_args(sets)]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # progress lines, then the error
    errors = [line for line in err if line.startswith("stpl: error:")]
    assert errors == err[-1:] and "not finite" in errors[0], err
    # A bad loss or gradient is caught in step 3 itself; a bad weight when step 3's checkpoint is written.
    assert "diverged at step 3" in errors[0] and kind in errors[0]
    assert "the last checkpoint" in errors[0] and load_checkpoint(out / LAST_CHECKPOINT).step == 2
    assert not (out / "model.safetensors").exists()  # nothing that could be scored as a result
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"non-strict JSON token {name}"))


def collapse_forward(monkeypatch) -> None:
    """Every forward pass of the segmenter returns logits that put class 0 first by a wide margin: collapsed."""
    from stpl.models.segmenter import VideoSegmenter

    forward = VideoSegmenter.forward

    def collapsed(self, *args, **kwargs):
        output = forward(self, *args, **kwargs)
        margin = torch.zeros_like(output.logits)
        margin[:, 0] = 1e4  # far beyond any logit the toy model makes: argmax is 0, softmax one-hot
        output.logits = output.logits + margin
        return output

    monkeypatch.setattr(VideoSegmenter, "forward", collapsed)


def test_a_collapsed_adaptation_warns_and_is_marked_in_metrics_model_and_eval(
    tmp_path, toy_settings, source_model, capsys, monkeypatch
):
    collapse_forward(monkeypatch)
    out = tmp_path / "tent"
    sets = [*toy_settings, "adapt.iterations=6"]
    capsys.readouterr()
    assert main([*command_args("adapt", source_model), "--out", str(out), *set_args(sets)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("stpl: warning:")]
    assert len(warnings) == 1 and "collapsed for the last 6 steps" in warnings[0] and "100.0%" in warnings[0]
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 6 and last["collapsed"] is True and last["largest_class_share"] == 1.0
    assert read_meta(out / "model.safetensors")["collapsed"] is True
    monkeypatch.undo()  # scoring reads the flag from the checkpoint, whatever the model predicts now
    assert main(["eval", "--ckpt", str(out / "model.safetensors"), "--out", str(tmp_path / "eval"),
                 *set_args(toy_settings)]) == 0  # fmt: skip
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["collapsed"] is True


def test_a_healthy_run_is_not_marked_collapsed(tmp_path, toy_settings, source_model, capsys):
    out = tmp_path / "tent"
    capsys.readouterr()
    assert main([*command_args("adapt", source_model), "--out", str(out), *set_args(toy_settings)]) == 0
    assert "stpl: warning:" not in capsys.readouterr().err
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["collapsed"] is False and 0.0 < last["largest_class_share"] < 0.99 and last["entropy_norm"] > 1e-3
    assert read_meta(out / "model.safetensors")["collapsed"] is False


def test_tent_at_a_huge_learning_rate_never_ends_silently(tmp_path, toy_settings, source_model, capsys):
    """lr = 1e30: float32 overflows on some machines (divergence, exit 2) and saturates the softmax on others
    (entropy 0, exit 0): either way the user is told."""
    out = tmp_path / "tent"
    sets = [*toy_settings, "adapt.lr=1e30", "adapt.iterations=6"]
    capsys.readouterr()
    code = main([*command_args("adapt", source_model), "--out", str(out), *set_args(sets)])
    err = capsys.readouterr().err
    if code == 2:
        assert "diverged at step" in err and not (out / "model.safetensors").exists()
    else:
        assert code == 0 and "stpl: warning:" in err and "collapsed" in err
        assert read_meta(out / "model.safetensors")["collapsed"] is True


@pytest.fixture
def default_signal_handlers():
    """Ctrl-C and SIGTERM handled as in a terminal, whatever the test runner inherited (nohup ignores SIGINT)."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.mark.parametrize("number, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_checkpoints_and_resumes_to_the_same_weights(
    number, code, tmp_path, toy_settings, capsys, monkeypatch, default_signal_handlers
):
    sets = [*toy_settings, "train.iterations=40", "train.checkpoint_every=100", "train.checkpoint_minutes=0"]
    whole = tmp_path / "whole"
    assert main(["train-source", "--out", str(whole), *set_args(sets)]) == 0

    step_of = Supervised.step

    def step(self, batch, step):
        if step == 29:  # during the 30th step: the loop finishes it, checkpoints, stops
            os.kill(os.getpid(), number)
        return step_of(self, batch, step)

    monkeypatch.setattr(Supervised, "step", step)
    out = tmp_path / "stopped"
    capsys.readouterr()
    assert main(["train-source", "--out", str(out), *set_args(sets)]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("stpl: source stopped by") and "after step 30 of 40" in err[-1], err
    assert load_checkpoint(out / LAST_CHECKPOINT).step == 30 and not (out / "model.safetensors").exists()
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are put back
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert main(["train-source", "--out", str(out), *set_args(sets)]) == 0
    resumed, uninterrupted = load_checkpoint(out / "model.safetensors"), load_checkpoint(whole / "model.safetensors")
    for name, value in uninterrupted.model.items():  # same process, same thread count: bit-identical
        assert torch.equal(resumed.model[name], value), name


def test_a_run_started_to_ignore_ctrl_c_keeps_ignoring_it(tmp_path, toy_settings, monkeypatch):
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup
    try:
        step_of = Supervised.step

        def step(self, batch, step):
            if step == 1:
                os.kill(os.getpid(), signal.SIGINT)
            return step_of(self, batch, step)

        monkeypatch.setattr(Supervised, "step", step)
        out = tmp_path / "run"
        assert main(["train-source", "--out", str(out), *set_args(toy_settings)]) == 0  # ran to its end
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, saved)


def test_checkpoints_are_also_taken_by_time(tmp_path, toy_settings, capsys, monkeypatch):
    """checkpoint_every far away, a checkpoint time of ~0: every step writes one, so a failure at step 4 keeps 3."""
    inject_fault(monkeypatch, Supervised, "loss", at_step=3)
    out = tmp_path / "run"
    sets = [*toy_settings, "train.iterations=6", "train.checkpoint_every=100", "train.checkpoint_minutes=1e-9"]
    assert main(["train-source", "--out", str(out), *set_args(sets)]) == 2
    assert load_checkpoint(out / LAST_CHECKPOINT).step == 3


def test_a_rerun_removes_what_a_killed_write_left(tmp_path, toy_settings):
    out = tmp_path / "run"
    out.mkdir()
    leftovers = [out / ".checkpoint_last.safetensors.k3j2.tmp", out / "snapshots" / ".step000002.safetensors.x.tmp"]
    leftovers[1].parent.mkdir()
    for path in leftovers:
        path.write_bytes(b"half a file")
    keep = out / "notes.tmp"  # not a name atomic writes make: not ours to delete
    keep.write_text("mine")
    assert main(["train-source", "--out", str(out), *set_args(toy_settings)]) == 0
    assert not any(path.exists() for path in leftovers) and keep.read_text() == "mine"


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from stpl.data.loader import batches_in_order
    from stpl.runlock import run_lock

    class Slow:  # a batch source whose worker stays busy long after the parent is gone
        def get(self, step):
            time.sleep(30)
            return step

    with run_lock(Path(sys.argv[1])):
        stream = batches_in_order(Slow(), 0, 10, workers=1)
        threading.Thread(target=next, args=(stream,), daemon=True).start()  # forks the worker, waits for it
        time.sleep(2)  # the worker is forked and sleeping in get()
        print("ready", flush=True)
        time.sleep(60)
    """
)


def test_a_killed_runs_orphaned_loader_worker_does_not_hold_the_lock(tmp_path):
    from stpl.runlock import run_lock

    folder = tmp_path / "run"
    script = tmp_path / "hold.py"
    script.write_text(ORPHAN_SCRIPT)
    holder = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
    finally:
        holder.kill()
        holder.wait()
    started = time.monotonic()
    with run_lock(folder):  # at once, though the worker may live on for seconds
        pass
    assert time.monotonic() - started < 1.0


def cached_flow_run(tmp_path):
    """Two identical estimates of one pair's flow through the cache, with the cache's file for it."""
    import numpy as np

    from stpl.config import FlowConfig
    from stpl.flow import estimate_pair_flows

    frames = np.zeros((2, 24, 32, 3), np.uint8)
    texture = np.random.default_rng(0).integers(60, 255, (10, 10, 3), dtype=np.uint8)
    frames[0, 6:16, 8:18], frames[1, 6:16, 10:20] = texture, texture
    config = FlowConfig(cache_dir=str(tmp_path / "cache"))

    def estimate(in_memory=True):
        return estimate_pair_flows(frames, np.array([[1, 0]]), ["a", "b"], "pair", config, in_memory=in_memory)

    first = estimate()
    (entry,) = (tmp_path / "cache").rglob("*_int16_x10.npy")
    return estimate, first, entry


def test_a_flow_cache_entry_overwritten_with_other_bytes_is_computed_again(tmp_path, capsys):
    import numpy as np

    estimate, first, entry = cached_flow_run(tmp_path)
    original = entry.read_bytes()
    header = len(original) - first[0].size * 2  # int16 payload at the end of the .npy file
    tampered = bytearray(original)
    tampered[header:] = bytes(reversed(tampered[header:]))  # same size, other values
    assert bytes(tampered) != original
    entry.write_bytes(bytes(tampered))
    capsys.readouterr()
    again = estimate()
    assert "1 damaged or unverified cache entries" in capsys.readouterr().out
    np.testing.assert_array_equal(again, first)  # recomputed: the same DIS on the same frames
    assert entry.read_bytes() == original  # and the entry repaired


def test_a_flow_cache_entry_of_another_shape_is_computed_again(tmp_path, capsys):
    import numpy as np

    estimate, first, entry = cached_flow_run(tmp_path)
    np.save(entry, np.zeros((5, 7, 2), np.int16))  # a valid .npy of another shape
    capsys.readouterr()
    np.testing.assert_array_equal(estimate(), first)
    assert "1 damaged or unverified cache entries" in capsys.readouterr().out


def test_a_flow_cache_entry_damaged_during_a_disk_stored_run_is_one_line(tmp_path):
    import numpy as np

    from stpl.errors import StplError

    estimate, first, entry = cached_flow_run(tmp_path)
    on_disk = estimate(in_memory=False)
    np.testing.assert_array_equal(on_disk[np.array([0])], first)
    np.save(entry, np.zeros((24, 32, 2), np.int16))  # the right shape, other contents
    with pytest.raises(StplError, match="vanished or was damaged"):
        on_disk[np.array([0])]


def test_bench_marks_collapsed_runs_in_its_table(tmp_path, toy_settings, monkeypatch):
    collapse_forward(monkeypatch)  # the source model's training collapses, and TENT's adaptation of it
    out = tmp_path / "bench"
    args = ["bench", "--benchmark", "synthetic", "--methods", "source-only,tent", "--out", str(out)]
    assert main([*args, *set_args([*toy_settings, "adapt.iterations=4"])]) == 0
    table = (out / "results.md").read_text()
    assert "| tent (collapsed: 1 of 1 runs) |" in table and "| source-only (collapsed: 1 of 1 runs) |" in table
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert {run["method"]: run["collapsed"] for run in runs} == {"source-only": True, "tent": True}


def test_progress_shows_between_log_steps(tmp_path, toy_settings, capsys, monkeypatch):
    import stpl.engine.loop
    from stpl.progress import Progress

    class Eager(Progress):  # every call may print, as each would after 10 s of slow steps
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "every_seconds": 0.0})

    monkeypatch.setattr(stpl.engine.loop, "Progress", Eager)
    sets = [*toy_settings, "train.log_every=100"]  # only the last step is a log step
    capsys.readouterr()
    assert main(["train-source", "--out", str(tmp_path / "run"), *set_args(sets)]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[source] ")]
    assert [line.split()[1] for line in lines[:3]] == ["1/4", "2/4", "3/4"] and "ETA" in lines[0]


def test_ctrl_c_in_the_last_step_stops_before_the_model_is_written(
    tmp_path, toy_settings, capsys, monkeypatch, default_signal_handlers
):
    step_of = Supervised.step

    def step(self, batch, step):
        if step == 3:  # the last of 4 steps
            os.kill(os.getpid(), signal.SIGINT)
        return step_of(self, batch, step)

    monkeypatch.setattr(Supervised, "step", step)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train-source", "--out", str(out), *set_args(toy_settings)]) == 130
    assert "after step 4 of 4" in capsys.readouterr().err and not (out / "model.safetensors").exists()
    monkeypatch.undo()
    assert main(["train-source", "--out", str(out), *set_args(toy_settings)]) == 0  # finishes: writes the model
    assert load_checkpoint(out / "model.safetensors").step == 4


def test_a_signal_passed_on_at_once_is_one_request_and_a_later_one_stops_now(default_signal_handlers, monkeypatch):
    from stpl.engine.interrupt import StopRequests
    from stpl.errors import Interrupted

    with StopRequests() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. `timeout` signalling its child and its group
        assert stop.received == signal.SIGTERM  # still waiting for the step to end
        monkeypatch.setattr(StopRequests, "REPEAT_SECONDS", 0.0)  # as if a second had passed
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGINT)


def test_loader_workers_leave_stop_signals_to_the_training_process():
    script = (
        "import signal; from stpl.data.loader import _worker_start; _worker_start(0); "
        "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True"]
