"""Mixed precision: a bf16 step on CPU gives the float32 step's losses within bf16's precision, keeps float32
weights, and whole toy runs finish in bf16; fp16 asks for CUDA."""

import json

import pytest
import torch

from stpl.cli import main
from stpl.config import build_config
from stpl.engine.loop import train_step
from stpl.engine.precision import Precision
from stpl.errors import StplError
from test_baselines import make_method, toy_batch


def set_args(settings):
    return [arg for s in settings for arg in ("--set", s)]


@pytest.mark.parametrize("name", ["stpl", "self-training", "tent"])
def test_a_bf16_step_matches_the_float32_step(name):
    losses = {}
    for mode in ("off", "bf16"):
        torch.manual_seed(0)
        method = make_method(name)
        optimizer = torch.optim.SGD(method.param_groups(), lr=0.01)
        _, total = train_step(method, optimizer, toy_batch(), 0, precision=Precision(mode, "cpu"))
        losses[mode] = total.item()
        assert all(p.dtype == torch.float32 for p in method.model.parameters())  # weights stay float32
        assert total.dtype == torch.float32
    # bf16 keeps 8 significant bits (a rounding is off by <= 2^-8 = 3.9e-3 relative); the losses are means over
    # thousands of pixels, so the errors partly cancel: measured 1e-5 to 1.1e-3 relative. 5 % (13 roundings'
    # worth) holds on any CPU, and a loss of garbage (overflow, wrong scale, NaN) fails it.
    assert losses["bf16"] == pytest.approx(losses["off"], rel=0.05, abs=0.01)
    # It did run in another precision: the two differ by >= 1.4e-5 (> 100 float32 ulps of ~1.5), never by chance 0.
    assert losses["bf16"] != losses["off"]


def test_autocast_runs_the_network_in_bf16():
    method = make_method("stpl")
    batch = toy_batch()
    with Precision("bf16", "cpu").autocast():
        assert method.model(batch.current, batch.previous, batch.flow).logits.dtype == torch.bfloat16
    assert method.model(batch.current, batch.previous, batch.flow).logits.dtype == torch.float32


@pytest.mark.parametrize("command", ["train-source", "adapt"])
def test_whole_toy_runs_in_bf16(command, tmp_path, toy_settings):
    source = tmp_path / "source"
    assert main(["train-source", "--out", str(source), *set_args([*toy_settings, "train.amp=bf16"])]) == 0
    run = source
    if command == "adapt":
        run = tmp_path / "adapted"
        args = ["adapt", "--source-ckpt", str(source / "model.safetensors"), "--out", str(run)]
        assert main([*args, *set_args([*toy_settings, "adapt.amp=bf16"])]) == 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics and all(m["loss"] is not None and m["loss"] > 0 for m in metrics)


def test_fp16_needs_cuda():
    with pytest.raises(StplError, match="fp16 needs device cuda"):
        build_config(sets=["adapt.amp=fp16"])


def test_warping_bf16_features_samples_at_float32_positions():
    """Beyond x = 64 bf16 cannot hold a position to better than half a cell; the warp computes positions in float32,
    so a pattern with a 4-cell period, shifted by 0.3 cell, comes out as in float32 (values rounded to bf16 once)."""
    from stpl.models.warp import warp

    width = 160
    xs = torch.arange(width, dtype=torch.float32)
    pattern = torch.sin(xs * torch.pi / 2).view(1, 1, 1, width).expand(1, 1, 4, width).contiguous()
    flow = torch.zeros(1, 2, 4, width)
    flow[:, 0] = 0.3
    exact, _ = warp(pattern, flow)
    with Precision("bf16", "cpu").autocast():
        half, _ = warp(pattern.to(torch.bfloat16), flow)
    assert half.dtype == torch.bfloat16
    # Values |v| <= 1 rounded to bf16 on the way in and out: <= 2 x 2^-9 = 4e-3 (measured 7.8e-4). Positions held
    # in bf16 past x = 64 would be off by up to 0.25 cell, i.e. up to 0.39 in this pattern: 0.02 separates the two.
    assert (half.float() - exact)[..., 64:-1].abs().max() < 0.02


def test_the_fp16_loss_scale_survives_a_checkpoint():
    """An overflowing step halves the scale (65536 -> 32768) and restarts its growth count; a fresh Precision
    given the saved state carries on from there (the gradient scaler also runs on CPU, which is all this needs)."""
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    precision = Precision("fp16", "cpu")
    assert precision.state()["amp.scale"].item() == 65536.0
    # The overflow is forced (an infinite loss makes every gradient inf or NaN), not hoped for from a large step.
    precision.backward(model(torch.ones(2, 3)).sum() * float("inf"))
    precision.unscale(optimizer)
    precision.step(optimizer)
    saved = precision.state()
    assert saved["amp.scale"].item() == 32768.0 and saved["amp.growth_tracker"].item() == 0
    resumed = Precision("fp16", "cpu")
    resumed.load_state(saved)
    assert resumed.scaler.get_scale() == 32768.0
    off = Precision("off")
    off.load_state(saved)
    assert off.state() == {}
