"""The stream baselines: CoTTA's augmentation-averaged pseudo-label and stochastic restore, and statistics that
follow the stream (norm-ema), with values worked out by hand; both run online through `stpl bench`."""

import json
import math

import pytest
import torch

from conftest import TOY_SETTINGS, make_tiny_model, set_args
from stpl.adapt import build_method
from stpl.adapt.cotta import augmentation_averaged, stochastic_restore
from stpl.config import build_config
from stpl.data.pairs import PairBatch
from stpl.engine.loop import train_step
from test_baselines import toy_batch


def pair(height: int = 1, width: int = 2) -> PairBatch:
    images = torch.zeros(1, 3, height, width)
    return PairBatch(images, images.clone(), torch.zeros(1, 2, height, width), None, [0])


def test_augmentation_average_undoes_the_mirror_by_hand():
    """A "model" that ignores its input and always says: pixel 0 p = (1/4, 3/4), pixel 1 p = (1/2, 1/2). Mirrored
    back, the mirrored view says the opposite pixels; the mean is (3/8, 5/8) at both."""
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]).reshape(1, 2, 1, 2)
    mean = augmentation_averaged(lambda current, previous, flow: logits, pair(), scales=(1.0,), flip=True)
    assert torch.allclose(mean[0, :, 0, 0], torch.tensor([3 / 8, 5 / 8]))
    assert torch.allclose(mean[0, :, 0, 1], torch.tensor([3 / 8, 5 / 8]))
    alone = augmentation_averaged(lambda current, previous, flow: logits, pair(), scales=(1.0,), flip=False)
    assert torch.allclose(alone, logits.softmax(dim=1))


def test_augmentation_average_of_a_scale_equivariant_model_is_its_prediction():
    """Logits (x, -x) of the input's first channel, a constant 0.5 image: every scale sees 0.5 everywhere."""

    def model(current, previous, flow):
        return torch.cat([current[:, :1], -current[:, :1]], dim=1)

    batch = pair(6, 10)
    batch.current = torch.full_like(batch.current, 0.5)
    mean = augmentation_averaged(model, batch, scales=(0.5, 1.0, 2.0), flip=True)
    expected = torch.tensor([0.5, -0.5]).softmax(dim=0)
    assert mean.shape == (1, 2, 6, 10) and torch.allclose(mean, expected.view(1, 2, 1, 1).expand(1, 2, 6, 10))


def test_stochastic_restore_takes_back_the_drawn_share_exactly():
    layer = torch.nn.Linear(40, 25)
    source = {name: torch.zeros_like(p) for name, p in layer.named_parameters()}
    moved = {name: p.detach().clone() for name, p in layer.named_parameters()}
    stochastic_restore(layer, source, 0.0, torch.Generator().manual_seed(0))
    assert all(torch.equal(p, moved[n]) for n, p in layer.named_parameters())
    stochastic_restore(layer, source, 0.3, torch.Generator().manual_seed(0))
    restored = torch.cat([(p == 0).flatten() for p in layer.parameters()]).float()
    unchanged = torch.cat([(p == moved[n]).flatten() for n, p in layer.named_parameters()])
    assert bool(torch.all((restored == 1) | unchanged))  # each element either restored or left as it was
    # 1025 draws of probability 0.3: standard deviation 0.014; 0.06 is over four of them
    assert abs(float(restored.mean()) - 0.3) < 0.06
    stochastic_restore(layer, source, 1.0, torch.Generator().manual_seed(0))
    assert all(bool((p == 0).all()) for p in layer.parameters())


@pytest.mark.parametrize(("threshold", "teacher_passes"), [(1.01, 6), (0.0, 1)])
def test_cotta_averages_augmented_copies_only_below_the_threshold(threshold, teacher_passes, monkeypatch):
    """scales (0.75, 1.0, 1.5) x (as is, mirrored) = 6 teacher passes when the anchor is unsure, 1 otherwise."""
    config = build_config(sets=[*TOY_SETTINGS, "adapt.method=cotta", f"adapt.cotta.threshold={threshold}"])
    method = build_method(make_tiny_model(), config.adapt, seed=0)
    calls = []
    original = method.teacher.predict
    monkeypatch.setattr(method.teacher, "predict", lambda batch: calls.append(1) or original(batch))
    values = method.step(toy_batch(), 0)
    assert len(calls) == teacher_passes and torch.isfinite(values["loss_consistency"])


def test_cotta_steps_move_the_teacher_slowly():
    config = build_config(sets=[*TOY_SETTINGS, "adapt.method=cotta", "adapt.lr=0.05"])
    method = build_method(make_tiny_model(), config.adapt, seed=0)
    teacher_before = {k: v.clone() for k, v in method.teacher.model.state_dict().items()}
    optimizer = torch.optim.SGD(method.param_groups(), lr=0.05)
    method.train_mode()
    train_step(method, optimizer, toy_batch(), 0)
    student = dict(method.model.named_parameters())
    name = next(n for n, p in student.items() if not torch.equal(p, method.source[n]))
    teacher = method.teacher.model.state_dict()[name]
    # teacher = 0.999 teacher + 0.001 student, elementwise (the student after its step and any restore)
    expected = 0.999 * teacher_before[name] + 0.001 * student[name].detach()
    assert torch.allclose(teacher, expected, atol=1e-6)


def test_norm_ema_moves_the_statistics_by_its_momentum_and_trains_nothing():
    """One update with momentum m: running_mean <- (1 - m) running_mean + m * the batch's mean (per channel)."""
    config = build_config(sets=[*TOY_SETTINGS, "adapt.method=norm-ema", "adapt.norm_ema_momentum=0.25"])
    model = make_tiny_model()
    method = build_method(model, config.adapt, seed=0)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = first.running_mean.clone()
    seen = []
    first.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].mean(dim=(0, 2, 3))))
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(method.param_groups(), lr=0.1)
    method.train_mode()
    values, total = train_step(method, optimizer, toy_batch(), 0)
    assert values == {} and total.item() == 0.0
    # the encoder runs frame t and frame t-k: the layer sees the pair as one batch, or twice (one update each)
    expected = before.clone()
    for batch_mean in seen:
        expected = 0.75 * expected + 0.25 * batch_mean
    assert torch.allclose(first.running_mean, expected, atol=1e-5)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


def test_the_stream_baselines_run_online_in_a_bench(tmp_path):
    settings = [*TOY_SETTINGS, f"flow.cache_dir={tmp_path / 'flow'}", "adapt.online.window=2"]
    out = tmp_path / "bench"
    args = ["bench", "--benchmark", "synthetic", "--methods", "norm-online,cotta-online", "--seeds", "0"]
    from stpl.cli import main

    assert main([*args, "--out", str(out), *set_args(settings)]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [run["method"] for run in runs] == ["norm-online", "cotta-online"]
    assert all(run["health"]["confidence"] is not None and not run["uses_source"] for run in runs)


def test_auto_online_is_stpl_online_under_the_guard(tmp_path):
    settings = [*TOY_SETTINGS, f"flow.cache_dir={tmp_path / 'flow'}", "adapt.online.window=2",
                "adapt.online.guard_window=2"]  # fmt: skip
    out = tmp_path / "bench"
    args = ["bench", "--benchmark", "synthetic", "--methods", "stpl-online,auto-online", "--seeds", "0"]
    from stpl.cli import main

    assert main([*args, "--out", str(out), *set_args(settings)]) == 0
    plain, guarded = json.loads((out / "results.json").read_text())["runs"]
    assert (plain["method"], guarded["method"]) == ("stpl-online", "auto-online")
    assert plain["config"]["adapt"]["method"] == guarded["config"]["adapt"]["method"] == "stpl"
    assert not plain["config"]["adapt"]["online"]["guard"] and guarded["config"]["adapt"]["online"]["guard"]
    assert "guard_checks" not in plain["health"] and len(guarded["health"]["guard_checks"]) >= 1
