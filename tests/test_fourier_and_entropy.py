"""The Fourier amplitude swap of FDA and the entropy losses, on inputs whose answers are worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from stpl.data.fourier import low_frequency_band, low_frequency_swap
from stpl.losses.entropy import charbonnier_entropy, entropy_map


def test_the_band_is_the_square_around_zero_frequency_in_fft_order():
    band = low_frequency_band(10, 12, beta=0.2)  # b = floor(0.2 * 10) = 2: indices 0, 1, 2 and the last two
    rows = [0, 1, 2, 8, 9]
    columns = [0, 1, 2, 10, 11]
    expected = torch.zeros(10, 12, dtype=torch.bool)
    expected[torch.tensor(rows)[:, None], torch.tensor(columns)[None, :]] = True
    assert torch.equal(band, expected)
    assert low_frequency_band(7, 9, beta=0.0).sum() == 1 and low_frequency_band(7, 9, beta=0.0)[0, 0]
    with pytest.raises(ValueError, match="beta"):
        low_frequency_band(7, 9, beta=0.5)


def test_constant_images_take_the_target_constant():
    """A constant image has only the zero frequency, with amplitude H*W*c and phase 0 (c > 0): swapping that
    amplitude gives the target's constant."""
    source = torch.full((1, 3, 9, 11), 0.2)
    target = torch.full((1, 3, 9, 11), 0.7)
    assert torch.allclose(low_frequency_swap(source, target, beta=0.0), target, atol=1e-6)  # float32 FFT: ~1e-7


def test_only_the_mean_moves_when_the_band_is_the_zero_frequency():
    """source = 0.3 + a checkerboard of +-0.1 (all its energy at the highest frequency); target's mean 0.8: with
    beta = 0 the result is 0.8 + the same checkerboard (the source's phase at frequency 0 is 0, its mean > 0)."""
    checker = 0.1 * (torch.arange(8)[:, None] + torch.arange(10)[None, :]).remainder(2).mul(2).sub(1).float()
    source = (0.3 + checker).expand(1, 2, 8, 10)
    target = 0.8 + 0.05 * torch.randn(1, 2, 8, 10, generator=torch.Generator().manual_seed(0))
    target = target - target.mean(dim=(-2, -1), keepdim=True) + 0.8
    swapped = low_frequency_swap(source, target, beta=0.0)
    assert torch.allclose(swapped, 0.8 + checker, atol=1e-5)  # float32 FFT of 80 values near 1: ~1e-6


def test_the_same_image_is_left_as_it_is_and_shapes_must_match():
    image = torch.rand(2, 3, 12, 16, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(low_frequency_swap(image, image, beta=0.09), image, atol=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        low_frequency_swap(image, image[..., :15], beta=0.01)


def test_charbonnier_entropy_by_hand():
    logits = torch.tensor([0.0, math.log(3.0)]).reshape(1, 2, 1, 1)  # p = (1/4, 3/4)
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert entropy_map(logits).item() == pytest.approx(entropy, rel=1e-6)
    normalized = entropy / math.log(2)
    assert charbonnier_entropy(logits, eta=2.0).item() == pytest.approx((normalized**2 + 1e-8) ** 2, rel=1e-5)
    uniform = torch.zeros(1, 5, 3, 3)  # H_n = 1 everywhere
    assert charbonnier_entropy(uniform, eta=1.5).item() == pytest.approx((1 + 1e-8) ** 1.5, rel=1e-6)
    certain = torch.tensor([60.0, 0.0, 0.0]).reshape(1, 3, 1, 1)  # H_n ~ 1e-25: the penalty's floor (1e-8)**eta
    assert charbonnier_entropy(certain, eta=2.0).item() == pytest.approx(1e-16, rel=1e-3)
