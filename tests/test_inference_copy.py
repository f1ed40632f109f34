"""The prediction copy of a model: norms folded into convolutions, channels-last, same logits up to rounding."""

from __future__ import annotations

import torch
from torch import nn

from conftest import make_tiny_model
from stpl.models import build_model
from stpl.models.inference import fold_batch_norms, inference_copy


def trained_statistics(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so that folding has something to fold."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            count = module.num_features
            module.running_mean.copy_(torch.randn(count, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(count, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(count, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(count, generator=generator) * 0.1)
    return model.eval()


def test_folded_mobilenet_gives_the_same_logits_and_leaves_the_model_alone():
    model = trained_statistics(build_model(5, backbone="mobilenet_v2", pretrained=False, head="lraspp"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_copy(model)
    norms_left = sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    norms_before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert norms_left < norms_before // 2  # MobileNetV2's conv-norm pairs are folded
    frames = torch.randn(2, 3, 49, 67, generator=torch.Generator().manual_seed(1))
    flow = torch.randn(2, 2, 49, 67, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(frames, frames.flip(0), flow).logits
        got = fast(frames, frames.flip(0), flow).logits
    # float32: the folded weight w*g/sqrt(v+eps) rounds once per product (~1e-7 relative) and sums of ~1e3 terms
    # reorder in the channels-last kernels: ~1e-5 on logits of magnitude ~10; a norm folded wrongly moves them by ~1
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 1e-5 * max(scale, 1.0) * 10
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the trained module is untouched


def test_only_a_norm_right_after_a_convolution_is_folded():
    block = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)
    ).eval()
    assert fold_batch_norms(block) == 1
    assert isinstance(block[1], nn.Identity) and isinstance(block[3], nn.BatchNorm2d)


def test_the_tiny_model_survives_a_copy_without_norm_pairs():
    model = make_tiny_model().eval()
    frames = torch.randn(1, 3, 33, 47, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(frames, frames, torch.zeros(1, 2, 33, 47)).logits
        got = inference_copy(model)(frames, frames, torch.zeros(1, 2, 33, 47)).logits
    assert float((got - expected).abs().max()) <= 1e-4  # see above; the tiny model's logits are ~1
