"""The source-free baselines (adapt/<name>.py): losses by hand and what each step may change (end to end:
test_baselines_cli.py)."""

import math

import pytest
import torch

from conftest import TOY_SETTINGS, make_tiny_model
from stpl.adapt import METHODS, build_method
from stpl.adapt.davsn import intra_domain_consistency
from stpl.adapt.hcl import agreement_weights, historical_nce
from stpl.adapt.shared import prediction_pseudo_labels
from stpl.adapt.tps import cross_frame_pseudo_labels
from stpl.config import build_config
from stpl.constants import IGNORE_INDEX
from stpl.data.pairs import PairBatch
from stpl.engine.loop import train_step
from stpl.errors import StplError
from stpl.losses.entropy import entropy_map
from stpl.models.segmenter import ADAPTATION_MODULES, SegmenterOutput

BASELINES = ("tent", "self-training", "ur", "hcl", "tps", "davsn", "vst")


def toy_batch(seed: int = 0) -> PairBatch:
    """Frame t is frame t-k moved one pixel left: backward flow +1 in x, the last column flows outside."""
    generator = torch.Generator().manual_seed(seed)
    previous = torch.randn(2, 3, 33, 47, generator=generator)
    current = previous.roll(-1, dims=-1)
    flow = torch.zeros(2, 2, 33, 47)
    flow[:, 0] = 1.0
    return PairBatch(current, previous, flow, None, [0, 1])


def with_source(batch: PairBatch, seed: int = 1, num_classes: int = 5) -> PairBatch:
    """The batch with labelled source pairs attached (what the workflow gives the methods that use source data)."""
    source = toy_batch(seed)
    labels = torch.randint(0, num_classes, source.current[:, 0].shape, generator=torch.Generator().manual_seed(seed))
    batch.source = PairBatch(source.current, source.previous, source.flow, labels, source.index)
    return batch


def make_method(name: str, *sets: str):
    model = make_tiny_model()
    config = build_config(sets=[*TOY_SETTINGS, f"adapt.method={name}", "adapt.lr=0.05", *sets])
    return build_method(model, config.adapt, seed=0)


def train(method, steps: int = 3, batch: PairBatch | None = None) -> dict:
    """The loop's step (engine/loop.py train_step) on one toy batch."""
    batch = batch or toy_batch()
    optimizer = torch.optim.SGD(method.param_groups(), lr=0.0, momentum=0.9, weight_decay=5e-4)
    values = {}
    for step in range(steps):
        values, _ = train_step(method, optimizer, batch, step)
    return values


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


# -- every method: finite named losses, then what a few steps may touch --------------------------------------


def test_every_baseline_is_registered_and_in_the_config_schema():
    for name in BASELINES:
        assert METHODS[name].method is not None
        assert build_config(sets=[f"adapt.method={name}"]).adapt.method == name


@pytest.mark.parametrize("name", BASELINES)
def test_step_returns_finite_losses(name):
    method = make_method(name)
    method.train_mode()
    values = method.step(toy_batch(), 0)
    losses = {k: v for k, v in values.items() if k.startswith("loss_")}
    assert losses
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), key
    assert any(value.requires_grad for value in losses.values())


def test_tent_trains_only_norm_affine_parameters():
    method = make_method("tent")
    model = method.model
    before = snapshot(model)
    train(method)
    affine = {
        f"{name}.{p}"
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.BatchNorm2d)
        for p in ("weight", "bias")
    }
    moved = changed(before, model)
    assert moved and moved <= affine  # running statistics, convolutions, heads: byte-identical
    assert all(p.requires_grad == (n in affine) for n, p in model.named_parameters())
    assert all(group["weight_decay"] == 0.0 for group in method.param_groups())


def test_tent_with_norm_update_lets_running_statistics_follow():
    method = make_method("tent", "adapt.norm=update")
    before = snapshot(method.model)
    train(method, steps=1)
    assert any(k.endswith("running_mean") for k in changed(before, method.model))


def class_score_layer(model: torch.nn.Module) -> torch.nn.Conv2d:
    """The 1x1 convolution that gives the class scores (the classifier may wrap it with dropout)."""
    return [m for m in model.classifier.modules() if isinstance(m, torch.nn.Conv2d)][-1]


def test_tent_loss_is_the_entropy_of_the_prediction():
    # Hand-worked: p = (1/2, 1/4, 1/4) has H = 1/2 ln 2 + 2 * 1/4 ln 4 = 1.5 ln 2; uniform over K has ln K.
    # float32 log/softmax/sum over K <= 5 terms: a few ulps (eps 1.2e-7; measured 3e-9 relative), and the
    # vectorised log/exp differ by an ulp between CPUs; rel 1e-5 (~80 ulps) still fails any wrong formula (> 1e-2).
    logits = torch.tensor([0.5, 0.25, 0.25]).log().view(1, 3, 1, 1)
    assert entropy_map(logits).item() == pytest.approx(1.5 * math.log(2), rel=1e-5)
    assert entropy_map(torch.zeros(1, 4, 2, 2)).flatten().tolist() == pytest.approx([math.log(4)] * 4, rel=1e-5)
    assert entropy_map(torch.zeros(1, 4, 1, 1), normalized=True).item() == pytest.approx(1.0, rel=1e-5)
    # A classifier that outputs zeros predicts uniformly over the 5 classes: TENT's loss is exactly ln 5.
    method = make_method("tent")
    classifier = class_score_layer(method.model)
    torch.nn.init.zeros_(classifier.weight)
    torch.nn.init.zeros_(classifier.bias)
    method.train_mode()
    # ln 5 per pixel to an ulp, then a float32 mean over 2 x 33 x 47 pixels: at most ~log2(3102) ulps of 1.6
    # (2.3e-6; measured 3e-8), so abs 1e-6 was below the worst case; 1e-5 still fails any non-uniform prediction.
    assert method.step(toy_batch(), 0)["loss_entropy"].item() == pytest.approx(math.log(5), abs=1e-5)


@pytest.mark.parametrize("name", ["self-training", "vst"])
def test_frozen_teacher_stays_unchanged(name):
    method = make_method(name, "adapt.teacher=source")
    teacher = snapshot(method.teacher.model)
    before = snapshot(method.model)
    train(method)
    assert not changed(teacher, method.teacher.model)
    assert changed(before, method.model)
    assert not any(k.startswith(ADAPTATION_MODULES) for k in changed(before, method.model))


def test_self_training_ema_teacher_follows_the_student():
    method = make_method("self-training", "adapt.teacher=ema", "adapt.ema_momentum=0.9")
    old = snapshot(method.teacher.model)
    train(method, steps=1)
    student = method.model.state_dict()
    for key, value in method.teacher.model.state_dict().items():
        expected = 0.9 * old[key] + 0.1 * student[key] if value.is_floating_point() else student[key]
        # The teacher's update may round differently (fused lerp vs two products): <= 2 ulps of |value|, inside the
        # default rtol 1.3e-6 (~11 ulps) + atol 1e-5; a wrong momentum (0.99) is off by ~1e-2 of the step.
        torch.testing.assert_close(value, expected, msg=key)


def test_vst_keeps_only_temporally_consistent_class_balanced_pixels():
    method = make_method("vst", "adapt.teacher=ema", "adapt.confidence=global", "adapt.class_fraction=0.3")
    assert method.teacher.kind == "source"  # VST's pseudo-labels come from the frozen start, whatever the config
    assert method.config.confidence == "class_balanced" and method.config.temporal_agreement
    batch = toy_batch()
    teacher = method.teacher.predict(batch)
    labels = prediction_pseudo_labels(teacher, (33, 47), method.config)  # class-balanced 0.3, agreement on
    # the same bilinear upsampling of the same float32 logits as the labelling: bit-equal, so no argmax tie can split
    warped = torch.nn.functional.interpolate(teacher.warped_logits, size=(33, 47), mode="bilinear").argmax(1)
    kept = labels != IGNORE_INDEX
    assert kept.any() and (labels[kept] == warped[kept]).all()
    assert not kept[..., -1].any()  # the last column flows outside the earlier frame


def test_ur_freezes_the_class_scores_and_trains_the_noisy_decoders():
    method = make_method("ur", "adapt.ur.decoders=2")
    model = method.model
    before, source, decoders = snapshot(model), snapshot(method.source.model), snapshot(method.decoders)
    train(method)
    moved = changed(before, model)
    assert any(k.startswith("backbone.") for k in moved)
    assert not any(k.startswith(("classifier.", "score_fusion.", *ADAPTATION_MODULES)) for k in moved)
    assert not changed(source, method.source.model)  # pseudo-labels from the frozen source model
    assert changed(decoders, method.decoders) == set(decoders)  # every decoder weight moved
    assert len(method.decoders) == 2
    assert method.param_groups()[-1]["lr"] == pytest.approx(0.05 * 10)


def test_hcl_losses_by_hand_and_historical_model_is_an_ema():
    # Two orthonormal instances, reliability 1, τ = 1: -log(e / (e + 1)) each.
    # float32 log-sum-exp of 2 terms: a few ulps (measured 9e-8 relative, the default rel 1e-6 is ~8 ulps);
    # rel 1e-5 survives another CPU's exp/log, while a wrong weighting moves the value by > 1e-2.
    unit = torch.eye(2)
    loss = historical_nce(unit, unit, torch.ones(2), temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-5)
    # Key 1 half as reliable: query 0 gets -log(e / (e + 0.5)), query 1 -log(0.5 e / (0.5 e + 1)).
    expected = (math.log(1 + 0.5 / math.e) + math.log(1 + 2 / math.e)) / 2
    assert historical_nce(unit, unit, torch.tensor([1.0, 0.5]), 1.0).item() == pytest.approx(expected, rel=1e-5)
    # Seeded, not whatever the global generator holds: a draw whose three logits nearly tie at a pixel gives
    # KL < 6e-8 there and exp(-KL) == 1.0 in float32. Identical inputs give KL exactly 0, hence exactly 1.
    logits = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(agreement_weights(logits, logits), torch.ones(1, 2, 2))
    assert (agreement_weights(logits, -5 * logits) < 1).all()

    method = make_method("hcl", "adapt.hcl.momentum=0.5")
    old = snapshot(method.historical.model)
    before = snapshot(method.model)
    train(method, steps=1)
    student = method.model.state_dict()
    for key, value in method.historical.model.state_dict().items():
        expected = 0.5 * old[key] + 0.5 * student[key] if value.is_floating_point() else student[key]
        torch.testing.assert_close(value, expected, msg=key)  # default tolerance: see the EMA teacher test
    assert not any(k.startswith(ADAPTATION_MODULES) for k in changed(before, method.model))


def test_tps_labels_come_from_the_warped_earlier_frame():
    warped = torch.tensor([[[[2.0, -1.0, 0.0]], [[0.0, 1.0, 3.0]]]])  # [1,2,1,3]: classes 0, 1, 1
    output = SegmenterOutput(
        logits=torch.zeros(1, 2, 1, 3),
        frame_logits=torch.zeros(1, 2, 1, 3),
        warped_logits=warped,
        valid=torch.tensor([[[True, True, False]]]),
        features=torch.zeros(1, 1, 1, 3),
        warped_features=torch.zeros(1, 1, 1, 3),
    )
    assert cross_frame_pseudo_labels(output, (1, 3)).tolist() == [[[0, 1, IGNORE_INDEX]]]

    method = make_method("tps")
    assert method.teacher.model is method.model  # the current model labels, without gradient
    sizes = {tuple(method.strong_view(toy_batch()).current.shape[-2:]) for _ in range(5)}
    assert all(26 <= h <= 40 and 38 <= w <= 56 for h, w in sizes)  # 33x47 rescaled by 0.8..1.2
    before = snapshot(method.model)
    values = train(method)
    assert values["kept_fraction"] < 1.0  # the column that flows outside is ignored
    assert changed(before, method.model)
    assert not any(k.startswith(ADAPTATION_MODULES) for k in changed(before, method.model))


def test_davsn_consistency_by_hand():
    # Pixel 0: current (0.6, 0.4), propagated (0.9, 0.1) is more certain -> |.|: 0.3 + 0.3.
    # Pixel 1: propagated (0.6, 0.4) less certain than current -> ignored. Pixel 2: flows outside -> ignored.
    current = torch.tensor([[0.6, 0.9, 0.9], [0.4, 0.1, 0.1]]).log().view(1, 2, 1, 3).requires_grad_(True)
    propagated = torch.tensor([[0.9, 0.6, 0.99], [0.1, 0.4, 0.01]]).log().view(1, 2, 1, 3)
    output = SegmenterOutput(
        logits=torch.zeros(1, 2, 1, 3),
        frame_logits=current,
        warped_logits=propagated,
        valid=torch.tensor([[[True, True, False]]]),
        features=torch.zeros(1, 1, 1, 3),
        warped_features=torch.zeros(1, 1, 1, 3),
    )
    loss, mask = intra_domain_consistency(output)
    assert mask.tolist() == [[[True, False, False]]]
    # Probabilities rebuilt from float32 logs by softmax carry a few ulps of 1 (~2e-7 each; measured 1.3e-8 in
    # 0.1); abs 1e-6 (1e-5 relative) allows that on any CPU and still fails a wrong mask or mean (>= 0.02 off).
    assert loss.item() == pytest.approx(0.6 / 6, abs=1e-6)  # mean over 2 classes x 3 pixels
    loss.backward()
    assert current.grad[..., 1:].abs().sum() == 0

    method = make_method("davsn")
    before = snapshot(method.model)
    train(method)
    moved = changed(before, method.model)
    assert any(k.startswith("classifier.") for k in moved)
    # Only the current-frame prediction is trained: the logit fusion and the contrast modules get no gradient.
    assert not any(k.startswith(("score_fusion.", *ADAPTATION_MODULES)) for k in moved)


def test_bad_baseline_options_are_clear_errors():
    with pytest.raises(StplError, match="scale_range"):
        make_method("tps", "adapt.tps.scale_range=[1.2, 0.8]")
    with pytest.raises(StplError, match=r"adapt\.ur"):
        make_method("ur", "adapt.ur.decoders=0")


def test_anchor_loss_is_half_lambda_times_the_squared_distance_to_the_start():
    model = make_tiny_model(num_classes=3)
    config = build_config(sets=[*TOY_SETTINGS, "adapt.lambda_anchor=0.5"]).adapt
    method = build_method(model, config, 0)
    assert method.anchor_loss()["loss_anchor"].item() == 0.0  # w - w is exactly 0 in any arithmetic
    with torch.no_grad():
        class_score_layer(model).weight.add_(0.1)  # 0.1 on every weight of the classifier
    count = class_score_layer(model).weight.numel()
    # (w + 0.1) - w is 0.1 only to an ulp of |w + 0.1| < 1 (<= 1e-6 relative per term), summed over 144 terms in
    # float32 (measured 2e-7): rel 1e-4 is safe, and a missing 1/2 or λ is off by a factor of 2.
    assert method.anchor_loss()["loss_anchor"].item() == pytest.approx(0.5 * 0.5 * count * 0.01, rel=1e-4)
    plain = build_method(model, build_config(sets=TOY_SETTINGS).adapt, 0)
    assert plain.anchor_loss() == {}


# Parameters a method trains that one step leaves without gradient, and why: only STPL's contrast reaches the
# fusion block and projection head; DA-VSN trains the current frame's prediction alone (not the score fusion).
NO_GRADIENT_BY_DESIGN = {name: ADAPTATION_MODULES for name in METHODS if name != "stpl"}
NO_GRADIENT_BY_DESIGN["stpl"] = ()
NO_GRADIENT_BY_DESIGN["davsn"] = (*ADAPTATION_MODULES, "score_fusion.")
TRAINS_NOTHING = {"norm-ema"}


@pytest.mark.parametrize("name", [name for name, entry in METHODS.items() if entry.method is not None])
def test_gradient_reaches_every_parameter_a_method_trains(name):
    method = make_method(name)
    method.train_mode()
    values = method.step(with_source(toy_batch()) if method.uses_source else toy_batch(), 0)
    if name in TRAINS_NOTHING:  # its step only moves normalisation statistics
        assert not any(key.startswith("loss_") for key in values)
        return
    torch.stack([v for k, v in values.items() if k.startswith("loss_")]).sum().backward()
    trained = {id(p) for group in method.param_groups() for p in group["params"]}
    parameters = dict(method.model.named_parameters())
    if hasattr(method, "decoders"):  # UR's auxiliary decoders live beside the model
        parameters |= {f"decoders.{k}": v for k, v in method.decoders.named_parameters()}

    def has_gradient(parameter) -> bool:
        return parameter.grad is not None and bool(parameter.grad.abs().sum() > 0)

    by_design = NO_GRADIENT_BY_DESIGN[name]
    starved = [
        n for n, p in parameters.items() if id(p) in trained and not n.startswith(by_design) and not has_gradient(p)
    ]
    assert not starved, f"{name}: trained parameters without gradient: {starved}"
    reached = [n for n, p in parameters.items() if n.startswith(by_design) and has_gradient(p)]
    assert not reached, f"{name}: gradient where none was expected: {reached}"
    stray = [n for n, p in parameters.items() if id(p) not in trained and has_gradient(p)]
    assert not stray, f"{name}: gradient on parameters it does not train: {stray}"


def test_vst_keeps_its_own_temporal_rule_whatever_the_shared_teacher_options():
    method = make_method("vst", "adapt.teacher_later=true", "adapt.temporal_ensemble=true", "adapt.teacher=ema")
    c = method.config
    assert c.teacher == "source" and c.temporal_agreement and not c.temporal_ensemble and not c.teacher_later


def test_trainable_norm_trains_only_batch_norm_affine_parameters_without_decay():
    method = make_method("stpl", "adapt.trainable=norm")
    method.train_mode()
    before = {n: p.detach().clone() for n, p in method.model.named_parameters()}
    trained = [p for group in method.param_groups() for p in group["params"]]
    norm_affine = {id(p) for m in method.model.modules() if isinstance(m, torch.nn.BatchNorm2d)
                   for p in (m.weight, m.bias)}  # fmt: skip
    assert trained and {id(p) for p in trained} == norm_affine
    assert all(group["weight_decay"] == 0.0 for group in method.param_groups())
    optimizer = torch.optim.SGD(method.param_groups(), lr=0.1)
    values = method.step(toy_batch(), 0)
    torch.stack([v for k, v in values.items() if k.startswith("loss_")]).sum().backward()
    optimizer.step()
    changed = {n for n, p in method.model.named_parameters() if not torch.equal(p, before[n])}
    by_id = {n: id(p) for n, p in method.model.named_parameters()}
    assert changed and all(by_id[n] in norm_affine for n in changed)  # a frozen weight that moved would be named


@pytest.mark.parametrize("name", ["stpl", "cotta"])
def test_teachers_normalise_with_the_students_statistics_when_they_follow_the_target(name):
    method = make_method(name, "adapt.norm=update")
    teachers = [method.teacher, *([method.anchor] if name == "cotta" else [])]
    norms = [m for m in method.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:  # statistics as a stream would have moved them: far from those the copies started with
            norm.running_mean.add_(0.5)
            norm.running_var.mul_(3.0)
    batch = toy_batch()
    method.model.eval()
    expected = method.model(batch.current, batch.previous, batch.flow).logits
    for teacher in teachers:
        # a frozen copy (cotta's anchor) and an EMA that has not moved yet differ from the student by statistics
        # alone, so with the student's copied in they predict what the student does, to float rounding
        torch.testing.assert_close(teacher.predict(batch).logits, expected)
    fixed = make_method(name, "adapt.norm=reestimate")  # statistics fixed after re-estimation: the copy keeps its own
    with torch.no_grad():
        for norm in [m for m in fixed.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]:
            norm.running_mean.add_(0.5)
    fixed.model.eval()
    moved = fixed.model(batch.current, batch.previous, batch.flow).logits
    assert (fixed.teacher.predict(batch).logits - moved).abs().max() > 1e-3
