"""The cores of the domain-adaptation baselines that use source data (adapt/uda/), on inputs whose answers are
worked out by hand: adversarial losses, the discriminator's shape rules, the frequency bands and band-wise swaps,
RDA's attack, FDA's pixel-space styling, the quantile thresholds, normalisation of source pairs, VAT-VST's phases."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import TOY_SETTINGS, make_tiny_model
from stpl.adapt import build_method
from stpl.adapt.norm import batch_statistics
from stpl.adapt.pseudo_labels import class_median_thresholds
from stpl.adapt.uda.davsn import joint_probabilities
from stpl.adapt.uda.fda import styled_like
from stpl.adapt.uda.rda import fourier_attack
from stpl.config import build_config
from stpl.data.fourier import frequency_bands, swap_band_amplitudes
from stpl.data.pairs import PairBatch, normalize
from stpl.losses.adversarial import discriminator_loss, fooling_loss
from stpl.models.discriminator import Discriminator
from test_baselines import toy_batch, with_source


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_adversarial_losses_by_hand():
    """BCE(z, 0) = log(1 + e^z), BCE(z, 1) = log(1 + e^-z): an undecided D (z = 0) costs log 2 in every term."""
    zeros = torch.zeros(2, 1, 3, 4)
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(math.log(2), rel=1e-6)
    assert fooling_loss(zeros).item() == pytest.approx(math.log(2), rel=1e-6)
    source, target = torch.full((1, 1, 2, 2), -2.0), torch.full((1, 1, 2, 2), 3.0)  # D sure and right
    assert discriminator_loss(source, target).item() == pytest.approx(0.5 * (softplus(-2) + softplus(-3)), rel=1e-6)
    assert fooling_loss(target).item() == pytest.approx(softplus(3.0), rel=1e-6)  # ~ |z|: the segmenter pays


def test_discriminator_leaves_one_patch_for_small_maps_and_several_for_large():
    torch.manual_seed(0)
    discriminator = Discriminator(6, width=4)
    assert discriminator(torch.rand(2, 6, 3, 5)).shape == (2, 1, 1, 1)  # enlarged to 32 x 53: 5 halvings -> 1 x 1
    assert discriminator(torch.rand(1, 6, 30, 40)).shape == (1, 1, 1, 1)  # 32 x 43 -> 1 x 1
    assert discriminator(torch.rand(1, 6, 64, 96)).shape == (1, 1, 2, 3)  # 64 / 32, 96 / 32


def test_joint_probabilities_share_one_softmax_over_both_predictions():
    first = torch.tensor([0.0, math.log(3.0)]).reshape(1, 2, 1, 1)  # exp: 1, 3
    second = torch.tensor([math.log(2.0), math.log(2.0)]).reshape(1, 2, 1, 1)  # exp: 2, 2
    joint = joint_probabilities(first, second).flatten().tolist()
    assert joint == pytest.approx([1 / 8, 3 / 8, 2 / 8, 2 / 8], rel=1e-6)


def test_frequency_bands_are_concentric_rectangles_in_fft_order():
    bands = frequency_bands(8, 8, 4)  # distance to zero min(i, 8 - i) / 4, times 4 bands
    assert bands[0, 0] == 0 and bands[1, 0] == 1 and bands[7, 0] == 1 and bands[2, 1] == 2 and bands[6, 7] == 2
    assert bands[4, 4] == 3 and bands[3, 0] == 3  # 3 / 4 * 4 = 3; 4 / 4 * 4 = 4 clamped to the last band
    odd = frequency_bands(5, 7, 4)  # (2, 3): max(2 / 2.5, 3 / 3.5) * 4 = 3.43 -> band 3; (1, 1): max(0.4, 0.29) -> 1
    assert odd[2, 3] == 3 and odd[1, 1] == 1 and odd.shape == (5, 7)


def test_band_swaps_by_hand():
    """Constant images live in band 0 alone: weight 0 keeps an image, weight 1 in band 0 gives the reference's
    constant; a checkerboard (the highest frequency) stays where band 0 alone is swapped."""
    band_map = frequency_bands(6, 8, 4)
    checker = 10.0 * (torch.arange(6)[:, None] + torch.arange(8)[None, :]).remainder(2).mul(2).sub(1).float()
    image = (100.0 + checker).expand(1, 3, 6, 8)
    reference = torch.full((1, 3, 6, 8), 40.0)
    keep = torch.zeros(1, 3, 4)
    assert torch.allclose(swap_band_amplitudes(image, reference, band_map, keep), image, atol=1e-4)
    dc = keep.clone()
    dc[..., 0] = 1.0
    assert torch.allclose(swap_band_amplitudes(image, reference, band_map, dc), 40.0 + checker, atol=1e-4)
    half = keep.clone()
    half[0, 1, 0] = 0.5  # channel 1 only, half way: mean 70
    swapped = swap_band_amplitudes(image, reference, band_map, half)
    assert torch.allclose(swapped[0, 1], 70.0 + checker, atol=1e-4)
    assert torch.allclose(swapped[0, [0, 2]], image[0, [0, 2]], atol=1e-4)


def constant_pair(value: float, size: tuple[int, int] = (6, 8)) -> torch.Tensor:
    return normalize(torch.full((1, 3, *size), value))


@pytest.mark.parametrize(
    ("reference", "semantic", "expected"),
    [
        (150.0, (1, 2), 150.0),  # brighter raises the mean: band 0 is swapped
        (50.0, (1, 2), 100.0),  # darker lowers it: nothing is swapped
        (150.0, (0, 1), 100.0),  # band 0 declared semantic: never touched
    ],
)
def test_fourier_attack_swaps_only_what_raises_the_loss(reference, semantic, expected):
    """loss = mean of the normalised frame t; for constant frames every amplitude outside frequency 0 is 0 on both
    sides, so only band 0 can change anything: d loss / d w_c = (ref - 100) / (255 std_c) / 3, positive iff the
    reference is brighter."""
    current = previous = constant_pair(100.0)

    def loss_of(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        return current.mean()

    attacked, attacked_previous = fourier_attack(
        current, previous, constant_pair(reference), loss_of, bands=4, semantic=semantic, share=0.25
    )
    assert torch.allclose(attacked, constant_pair(expected), atol=1e-4)
    assert torch.allclose(attacked_previous, constant_pair(expected), atol=1e-4)  # the same components


def test_fda_styles_in_pixel_values():
    """A black frame (normalised mean < 0) styled like a frame of value 10 becomes that frame: swapping the
    normalised images' amplitudes would have flipped the sign of the mean."""
    styled = styled_like(constant_pair(0.0), constant_pair(10.0), beta=0.0)
    assert torch.allclose(styled, constant_pair(10.0), atol=1e-4)


def test_quantile_thresholds_by_hand():
    """Class 0 confidences 0.55, 0.60, ..., 1.00 (10 pixels): FDA's q = 0.66 takes the 7th smallest, 0.85;
    the median rule the 5th (lower median), 0.75; a cap of 0.8 wins over 0.85."""
    confidence = 0.5 + 0.05 * torch.arange(1, 11, dtype=torch.float64)
    probabilities = torch.stack([confidence, 1 - confidence]).reshape(1, 2, 1, 10)
    assert class_median_thresholds([probabilities], 2, cap=0.9, quantile=0.66)[0].item() == pytest.approx(0.85)
    assert class_median_thresholds([probabilities], 2, cap=0.9)[0].item() == pytest.approx(0.75)
    assert class_median_thresholds([probabilities], 2, cap=0.8, quantile=0.66)[0].item() == pytest.approx(0.8)
    assert class_median_thresholds([probabilities], 2, cap=0.9, quantile=0.66)[1].item() == pytest.approx(0.9)


def test_source_pairs_use_their_own_statistics_and_leave_the_stored_ones():
    norm = torch.nn.BatchNorm2d(3).eval()
    norm.running_mean.fill_(5.0)
    images = 3.0 + 2.0 * torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    with batch_statistics([norm], update_running=False):
        out = norm(images)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)  # normalised by the batch
    assert torch.equal(norm.running_mean, torch.full((3,), 5.0)) and torch.equal(norm.running_var, torch.ones(3))
    assert not norm.training and norm.momentum == 0.1


UDA_NAMES = ("uda-fda", "uda-pixmatch", "uda-rda", "uda-davsn", "uda-vatvst", "uda-tps")


def uda_method(name: str, *sets: str):
    config = build_config(sets=[*TOY_SETTINGS, f"adapt.method={name}", *sets])
    return build_method(make_tiny_model(), config.adapt, seed=0)


def test_discriminators_learn_after_the_segmenter_and_never_from_its_loss():
    method = uda_method("uda-davsn")
    before = {k: v.clone() for k, v in method.alignment.discriminators.state_dict().items()}
    values = method.step(with_source(toy_batch()), 0)
    total = torch.stack([v for k, v in values.items() if k.startswith("loss_")]).sum()
    total.backward()
    assert all(p.grad is None for p in method.alignment.discriminators.parameters())  # fixed while fooled
    assert set(method.alignment.pending) == {"spatial", "temporal"}
    method.after_step()
    after = method.alignment.discriminators.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)  # every layer took its Adam step
    assert method.alignment.pending == {} and method.alignment.last_loss.item() > 0


def test_vatvst_trains_adversarially_then_self_trains_from_a_frozen_copy():
    method = uda_method("uda-vatvst", "adapt.iterations=4", "adapt.uda.vatvst_vat_share=0.5")
    method.train_mode()  # as the loop sets it: stored (target) statistics, so a forward changes no buffer
    batch = with_source(toy_batch())
    assert set(method.step(batch, 1)) == {"loss_source", "loss_adversarial_temporal", "discriminator_loss"}
    assert method.teacher is None
    values = method.step(batch, 2)  # round(0.5 * 4) = 2: phase 2, target only
    assert set(values) == {"loss_vst", "kept_fraction"} and method.teacher is not None
    teacher = method.teacher.model.state_dict()
    assert all(torch.equal(v, teacher[k]) for k, v in method.model.state_dict().items())


def test_a_uda_method_refuses_a_batch_without_source_pairs():
    from stpl.errors import StplError

    with pytest.raises(StplError, match="labelled source pairs"):
        uda_method("uda-tps").step(toy_batch(), 0)


@pytest.mark.parametrize("name", ["uda-fda", "uda-pixmatch", "uda-rda", "uda-davsn", "uda-vatvst", "uda-tps"])
def test_the_last_forward_pass_of_a_step_is_a_target_one(name):
    """The collapse watch judges the last forward pass of each step: it must see target predictions, not source
    ones. Source batches of 3 pairs beside target batches of 2 tell them apart."""
    method = uda_method(name)
    method.train_mode()
    batch = toy_batch()
    first, second = toy_batch(seed=3), toy_batch(seed=4)
    source = PairBatch(
        torch.cat([first.current, second.current[:1]]), torch.cat([first.previous, second.previous[:1]]),
        torch.cat([first.flow, second.flow[:1]]), torch.randint(0, 5, (3, 33, 47)), [0, 1, 2],
    )  # fmt: skip
    batch.source = source
    seen = []
    handle = method.model.register_forward_hook(lambda module, inputs, output: seen.append(output.logits.shape[0]))
    method.step(batch, 0)
    handle.remove()
    assert 3 in seen and seen[-1] == 2


def test_shared_statistics_put_source_pairs_through_the_stored_ones():
    """With "shared", a source forward in the loop's modes (stored statistics) equals the target-style forward; with
    "own" it normalises by the batch and differs."""
    batch = with_source(toy_batch())
    outputs = {}
    for mode in ("own", "shared"):
        method = uda_method("uda-tps", f"adapt.uda.source_statistics={mode}")
        method.train_mode()
        source = batch.source
        with torch.no_grad():
            outputs[mode] = method.source_forward(source.current, source.previous, source.flow).logits
            stored = method.model(source.current, source.previous, source.flow).logits
        assert torch.equal(outputs[mode], stored) == (mode == "shared")


def test_each_method_normalises_source_pairs_as_held_out_frames_chose_unless_told():
    """The "default" choice resolves per method (shared for the methods that self-train on perturbed target
    views); an explicit choice wins for every method."""
    defaults = {name: uda_method(name).source_statistics for name in UDA_NAMES}
    assert defaults == {
        "uda-fda": "own",
        "uda-pixmatch": "shared",
        "uda-rda": "shared",
        "uda-davsn": "own",
        "uda-vatvst": "own",
        "uda-tps": "shared",
    }
    for mode in ("own", "shared"):
        assert {uda_method(name, f"adapt.uda.source_statistics={mode}").source_statistics for name in UDA_NAMES} == {
            mode
        }
