"""Frame statistics (adapt/frame_statistics.py): eval-mode batch norm with each frame's own statistics mixed in."""

import copy

import pytest
import torch
from torch import nn

from stpl.adapt.frame_statistics import use_frame_statistics


def stored_norm(channels: int = 3) -> nn.BatchNorm2d:
    generator = torch.Generator().manual_seed(0)
    norm = nn.BatchNorm2d(channels)
    norm.running_mean.copy_(torch.rand(channels, generator=generator) * 2 - 1)
    norm.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
    norm.weight.data.copy_(torch.rand(channels, generator=generator) + 0.5)
    norm.bias.data.copy_(torch.rand(channels, generator=generator) - 0.5)
    return norm.eval()


def frames(shape=(2, 3, 5, 7)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 2 + 1


def test_share_one_normalises_each_frame_by_its_own_statistics():
    norm, x = stored_norm(), frames()
    use_frame_statistics(norm, 1.0)
    own = nn.functional.instance_norm(x, eps=norm.eps) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(norm(x), own, rtol=1e-5, atol=1e-5)


def test_share_mixes_the_stored_and_the_frame_statistics_by_hand():
    norm, x = stored_norm(), frames()
    use_frame_statistics(norm, 0.25)
    n, c = 1, 2  # one frame and channel, worked out by hand
    values = x[n, c]
    frame_mean = values.mean()
    frame_var = ((values - frame_mean) ** 2).mean()  # over the pixels, without correction
    mean = 0.75 * norm.running_mean[c] + 0.25 * frame_mean
    var = 0.75 * norm.running_var[c] + 0.25 * frame_var
    expected = (values - mean) / torch.sqrt(var + norm.eps) * norm.weight[c] + norm.bias[c]
    torch.testing.assert_close(norm(x)[n, c], expected, rtol=1e-5, atol=1e-5)


def test_share_zero_training_mode_and_pooled_maps_keep_the_plain_layer():
    x = frames()
    plain = stored_norm()
    assert use_frame_statistics(stored_norm(), 0.0) == 0
    hooked = stored_norm()
    assert use_frame_statistics(hooked, 1.0) == 1
    pooled = x.mean(dim=(2, 3), keepdim=True)  # one pixel: no statistics of its own
    torch.testing.assert_close(hooked(pooled), plain(pooled))
    hooked.train(), plain.train()
    torch.testing.assert_close(hooked(x), plain(x))  # training mode: batch statistics, as always
    with pytest.raises(ValueError, match="share"):
        use_frame_statistics(stored_norm(), 1.5)


def test_copies_of_the_model_normalise_the_same_way():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    use_frame_statistics(model, 0.5)
    teacher = copy.deepcopy(model)
    x = frames((1, 3, 9, 11))
    torch.testing.assert_close(teacher(x), model(x))
    teacher[1].running_mean.add_(1.0)  # the copy's hook reads the copy's statistics
    assert not torch.allclose(teacher(x), model(x))


def test_gradients_flow_through_the_frame_statistics_as_through_the_formula():
    x = frames().requires_grad_(True)
    norm = stored_norm()
    use_frame_statistics(norm, 0.5)
    mean = 0.5 * norm.running_mean.view(1, -1, 1, 1) + 0.5 * x.mean(dim=(2, 3), keepdim=True)
    var = 0.5 * norm.running_var.view(1, -1, 1, 1) + 0.5 * x.var(dim=(2, 3), keepdim=True, unbiased=False)
    formula = (x - mean) / torch.sqrt(var + norm.eps) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    (got,) = torch.autograd.grad((norm(x) * weights).sum(), x)
    (expected,) = torch.autograd.grad((formula * weights).sum(), x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # the one-pass path gives the same values
        torch.testing.assert_close(norm(x), formula.detach(), rtol=1e-5, atol=1e-5)


def test_half_precision_frames_come_back_in_their_dtype_with_float32_statistics():
    norm, x = stored_norm(), frames()
    use_frame_statistics(norm, 1.0)
    with torch.no_grad():
        full = norm(x)
        half = norm(x.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=2e-2, atol=5e-2)  # bfloat16 keeps 8 bits of mantissa


def test_an_online_model_without_batch_norm_says_frame_statistics_have_no_effect(capsys):
    from conftest import make_tiny_model
    from stpl.config import build_config
    from stpl.online import OnlineAdapter

    model = make_tiny_model()
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, nn.Identity())
    config = build_config(sets=["adapt.method=self-training", "adapt.online.frame_statistics=1.0"]).adapt
    OnlineAdapter(model, config)
    assert "frame_statistics has no effect" in capsys.readouterr().err
    OnlineAdapter(make_tiny_model(), config)  # with batch norm: nothing to say
    assert "frame_statistics" not in capsys.readouterr().err


def test_a_share_of_zero_goes_back_to_the_stored_statistics():
    from stpl.adapt.frame_statistics import frame_share

    norm = stored_norm()
    x = torch.randn(2, 3, 5, 7) * 3 + 1
    stored = norm(x)
    use_frame_statistics(norm, 1.0)
    assert frame_share(norm) == 1.0 and not torch.allclose(norm(x), stored)
    assert use_frame_statistics(norm, 0.0) == 0
    assert frame_share(norm) == 0.0 and torch.equal(norm(x), stored)
