"""The supervised recipe's parts: LR-ASPP head, scale/crop augmentation, class weights, warm-up, oracle from source."""

import json

import numpy as np
import pytest
import torch

from conftest import TOY_SETTINGS
from stpl.config import build_config
from stpl.constants import IGNORE_INDEX
from stpl.data.geometric import draw_scale_crop, scale_crop
from stpl.engine.checkpoint import load_checkpoint
from stpl.engine.loop import lr_factor
from stpl.errors import StplError
from stpl.losses.class_weights import median_frequency_weights
from stpl.models import build_model
from stpl.models.backbones import find_mobilenet_v2_weights
from stpl.workflows import train_supervised

LRASPP_TOY = [*TOY_SETTINGS, "model.head=lraspp", "model.output_stride=16"]


@pytest.mark.parametrize("size", [(33, 65), (40, 29)])
def test_lraspp_predicts_at_stride_8_and_every_parameter_learns(size):
    config = build_config(sets=LRASPP_TOY)
    torch.manual_seed(0)
    model = build_model(4, **config.model.network_options()).train()
    images = torch.randn(2, 3, *size)
    out = model(images, torch.randn(2, 3, *size), torch.randn(2, 2, *size), with_embeddings=True)
    h, w = (size[0] + 7) // 8, (size[1] + 7) // 8
    assert out.logits.shape == (2, 4, h, w)
    # the neck joins the C = 16-channel deep branch and the tiny backbone's 32-channel stride-8 features
    assert out.features.shape == (2, 16 + 32, h, w)
    ((out.logits**2).mean() + (out.embeddings[:, :1] * out.embeddings[:, 1:2]).mean()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_mobilenet_v2_low_level_features_are_its_stride_8_block():
    try:
        find_mobilenet_v2_weights()
    except StplError:
        pytest.skip("offline ImageNet weights package not installed")
    model = build_model(3, head="lraspp", output_stride=16).eval()
    low, deep = model.backbone(torch.randn(1, 3, 64, 96))
    assert low.shape == (1, 32, 8, 12) and deep.shape == (1, 320, 4, 6)
    assert model.backbone.low_level_index == 6  # features.4-6 are the 32-channel stride-8 blocks


def test_scale_one_at_the_origin_changes_nothing():
    current, previous = torch.randn(2, 3, 9, 13), torch.randn(2, 3, 9, 13)
    flow, label = torch.randn(2, 2, 9, 13), torch.randint(0, 5, (2, 9, 13))
    out = scale_crop(current, previous, flow, label, [(1.0, 0.3, 0.9)] * 2, IGNORE_INDEX)
    for got, expected in zip(out, (current, previous, flow, label), strict=True):  # exact up to an ulp
        torch.testing.assert_close(got, expected)


def test_scale_two_doubles_the_flow_and_crops_where_asked():
    current = torch.arange(6 * 8, dtype=torch.float32).view(1, 1, 6, 8).expand(1, 3, 6, 8).contiguous()
    flow = torch.stack((torch.full((6, 8), 1.5), torch.full((6, 8), -0.5)))[None]
    label = torch.zeros(1, 6, 8, dtype=torch.long)
    label[:, :, 4:] = 3
    # scale 2 -> 12x16; a top fraction of 0.99 gives row offset 6, left fraction 0.5 gives column offset 4
    current_out, _, flow_out, label_out = scale_crop(current, current, flow, label, [(2.0, 0.99, 0.5)], 255)
    assert current_out.shape == (1, 3, 6, 8)
    # constant fields resampled and scaled by powers of 2: exact up to an ulp, inside the default tolerance
    torch.testing.assert_close(flow_out[0, 0], torch.full((6, 8), 3.0))
    torch.testing.assert_close(flow_out[0, 1], torch.full((6, 8), -1.0))
    # columns 4..11 of the 16-wide label: label columns 2..5 -> 0,0,0,0 then 3,3,3,3
    assert label_out[0, 0].tolist() == [0, 0, 0, 0, 3, 3, 3, 3]


def test_shrinking_pads_labels_with_ignore_and_images_with_zero():
    current, flow = torch.ones(1, 3, 8, 10), torch.ones(1, 2, 8, 10)
    label = torch.ones(1, 8, 10, dtype=torch.long)
    current_out, _, flow_out, label_out = scale_crop(current, current, flow, label, [(0.5, 0.7, 0.2)], 255)
    assert (label_out[0, :4, :5] == 1).all() and (label_out[0, 4:] == 255).all() and (label_out[0, :, 5:] == 255).all()
    assert (current_out[0, :, 4:] == 0).all() and (current_out[0, :, :4, :5] == 1).all()
    torch.testing.assert_close(flow_out[0, :, :4, :5], torch.full((2, 4, 5), 0.5))


def test_scale_draws_stay_in_range_and_repeat_with_the_seed():
    draws = draw_scale_crop(np.random.default_rng(3), 50, (0.75, 1.5))
    assert all(0.75 <= s <= 1.5 and 0 <= t < 1 and 0 <= left < 1 for s, t, left in draws)
    assert draws == draw_scale_crop(np.random.default_rng(3), 50, (0.75, 1.5))


def test_median_frequency_weights_by_hand():
    # image 1: 6 px class 0, 2 px class 1; image 2: 4 px class 0, 4 px class 2; void (9) ignored; class 3 absent
    labels = np.array([[[0, 0, 0, 0], [0, 0, 1, 1]], [[0, 0, 0, 0], [2, 2, 2, 2]]])
    labels[0, 0, 0] = 9
    # freq: class 0 = 9/15, class 1 = 2/7, class 2 = 4/8; median = 1/2
    weights = median_frequency_weights(labels, num_classes=4, power=1.0)
    expected = torch.tensor([0.5 / (9 / 15), 0.5 / (2 / 7), 1.0, 1.0])
    # ratios of counts: a float32 rounding or two (<= 2.4e-7 relative) against the default rtol 1.3e-6
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(median_frequency_weights(labels, 4, power=0.5), expected.sqrt())


def test_warm_up_rises_linearly_then_poly_decays():
    factors = [lr_factor(step, 100, warmup_steps=4) for step in range(100)]
    peak = (1 - 4 / 100) ** 0.9
    assert factors[:4] == pytest.approx([peak / 4, peak / 2, 3 * peak / 4, peak])
    assert factors[4] == pytest.approx(peak) and factors[99] == pytest.approx(0.01**0.9)
    assert lr_factor(5, 100) == pytest.approx((1 - 5 / 100) ** 0.9)


def test_bad_scale_range_is_refused():
    with pytest.raises(StplError, match=r"train\.scale_range"):
        build_config(sets=[*TOY_SETTINGS, "train.scale_range=[1.5, 0.75]"])


def test_recipe_trains_and_the_oracle_starts_from_the_source_model(toy_settings, tmp_path):
    sets = [*toy_settings, "model.head=lraspp", "train.optimizer=adamw", "train.lr=0.005", "train.warmup_steps=2",
            "train.scale_range=[0.75, 1.5]", "train.class_weight_power=0.5"]  # fmt: skip
    config = build_config(sets=sets)
    source = train_supervised(config, tmp_path / "source")
    metrics = (tmp_path / "source" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 2 and all(np.isfinite(json.loads(line)["loss"]) for line in metrics)
    # zero oracle steps (train.iterations=0): the fine-tuned oracle is the source model itself
    still = build_config(sets=[*sets, "train.iterations=0"])
    oracle = train_supervised(still, tmp_path / "oracle", split="adapt", kind="oracle", init_checkpoint=source)
    source_state, oracle_state = load_checkpoint(source).model, load_checkpoint(oracle).model
    assert source_state.keys() == oracle_state.keys()
    for key, value in source_state.items():  # zero steps: the weights are copied, so exactly equal
        torch.testing.assert_close(oracle_state[key], value, rtol=0, atol=0)
    scratch = train_supervised(still, tmp_path / "scratch", split="adapt", kind="oracle-scratch")
    assert not torch.equal(load_checkpoint(scratch).model["classifier.weight"], source_state["classifier.weight"])


def test_warm_up_longer_than_a_short_run_is_cut_to_half_of_it():
    factors = [lr_factor(step, 4, warmup_steps=20) for step in range(4)]
    peak = (1 - 2 / 4) ** 0.9
    assert factors == pytest.approx([peak / 2, peak, peak, (1 - 3 / 4) ** 0.9])


def test_photometric_training_noise_changes_the_pixels_only_and_repeats_by_step(toy_settings):
    from stpl.data import RandomBatches, build_dataset

    dataset = build_dataset(build_config(sets=toy_settings), "source", with_labels=True)
    plain = RandomBatches(dataset, 3, seed=5, hflip=True, scale_range=(0.75, 1.5))
    noisy = RandomBatches(dataset, 3, seed=5, hflip=True, scale_range=(0.75, 1.5), photometric=1.0)
    for step in (0, 3):
        expected, got = plain.get(step), noisy.get(step)
        assert got.index == expected.index
        torch.testing.assert_close(got.flow, expected.flow)
        torch.testing.assert_close(got.label, expected.label)
        for name in ("current", "previous"):
            change = (getattr(got, name) - getattr(expected, name)).abs().mean()
            assert change > 0.05, name  # measured 0.37-0.43: no lucky draw
        again = noisy.get(step)  # a resumed run sees the same noise: same seed, same code, so bit-equal
        torch.testing.assert_close(again.current, got.current, rtol=0, atol=0)
        torch.testing.assert_close(again.previous, got.previous, rtol=0, atol=0)


@pytest.mark.parametrize("strength", [-1, 2.5])
def test_photometric_strength_outside_0_to_2_is_refused(strength):
    with pytest.raises(StplError, match=r"train\.photometric"):
        build_config(sets=[*TOY_SETTINGS, f"train.photometric={strength}"])
