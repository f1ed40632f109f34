"""The source-free baselines end to end: `stpl adapt` (source-free), resuming, `stpl bench`, a method from outside."""

import json
import math

import pytest
import torch

from conftest import TOY_SETTINGS, make_tiny_model, set_args
from stpl.adapt import METHODS, build_method
from stpl.cli import main
from stpl.config import build_config
from stpl.engine.checkpoint import load_checkpoint
from test_baselines import BASELINES


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Toy settings and a source checkpoint trained once for the whole module."""
    root = tmp_path_factory.mktemp("baselines")
    settings = [*TOY_SETTINGS, f"flow.cache_dir={root / 'flow-cache'}"]
    out = root / "source"
    assert main(["train-source", "--out", str(out), *set_args(settings)]) == 0
    return settings, out / "model.safetensors"


@pytest.mark.parametrize("name", BASELINES)
def test_adapt_cli_opens_only_unlabelled_target_video(name, toy, tmp_path, opened_splits):
    settings, source_ckpt = toy
    out = tmp_path / name
    args = [
        "adapt",
        "--source-ckpt",
        str(source_ckpt),
        "--out",
        str(out),
        *set_args([*settings, f"adapt.method={name}"]),
    ]
    assert main(args) == 0
    assert opened_splits == [("adapt", False)]  # source-free: no source split, no labels
    adapted = load_checkpoint(out / "model.safetensors")
    assert adapted.meta["method"] == name and adapted.step == 3
    source = load_checkpoint(source_ckpt)
    assert any(not torch.equal(source.model[k], adapted.model[k]) for k in source.model)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all(math.isfinite(m["loss"]) for m in metrics)


@pytest.mark.parametrize("name", ["self-training", "ur", "hcl", "tps", "vst"])
def test_interrupted_baseline_resumes_to_the_same_result(name, toy, tmp_path, monkeypatch):
    settings, source_ckpt = toy
    settings = [*settings, f"adapt.method={name}", "adapt.iterations=4", "adapt.checkpoint_every=2"]
    settings += ["adapt.teacher=ema", "adapt.student_augmentation=1.0"]  # exercise teacher and augmentation state

    def args(out):
        return ["adapt", "--source-ckpt", str(source_ckpt), "--out", str(out), *set_args(settings)]

    assert main(args(tmp_path / "straight")) == 0
    straight = load_checkpoint(tmp_path / "straight" / "model.safetensors")
    method_class = type(build_method(make_tiny_model(), build_config(sets=settings).adapt, 0))
    original_step = method_class.step

    def crash_at_step_three(self, batch, step):
        if step == 2:
            raise KeyboardInterrupt
        return original_step(self, batch, step)

    monkeypatch.setattr(method_class, "step", crash_at_step_three)
    assert main(args(tmp_path / "interrupted")) == 130
    monkeypatch.setattr(method_class, "step", original_step)
    assert main(args(tmp_path / "interrupted")) == 0
    resumed = load_checkpoint(tmp_path / "interrupted" / "model.safetensors")
    # Same batches, kernels and thread count in one process, state restored bit for bit: the runs are expected
    # bit-identical; the default tolerance (~11 ulps) only forgives what a lost RNG or optimiser state never would.
    for key, value in straight.model.items():
        torch.testing.assert_close(resumed.model[key], value, msg=key)


def test_bench_runs_every_baseline(toy, tmp_path):
    settings, _ = toy
    out = tmp_path / "bench"
    args = ["bench", "--benchmark", "synthetic", "--methods", ",".join(BASELINES), "--seeds", "0", "--out", str(out)]
    assert main([*args, *set_args(settings)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [run["method"] for run in results["runs"]] == list(BASELINES)
    assert all(0.0 <= run["mIoU"] <= 100.0 for run in results["runs"])
    table = (out / "results.md").read_text()
    assert all(f"| {name} | 1 |" in table for name in BASELINES)


def test_class_median_thresholds_are_set_once_and_survive_a_resume(toy_settings, tmp_path):
    from stpl.workflows import adapt, train_supervised

    sets = [*toy_settings, "adapt.method=self-training", "adapt.confidence=class_median", "adapt.teacher=source"]
    config = build_config(sets=sets)
    source = train_supervised(config, tmp_path / "source")
    final = adapt(config, source, tmp_path / "adapted")
    from stpl.engine.checkpoint import load_checkpoint

    thresholds = load_checkpoint(tmp_path / "adapted" / "checkpoint_last.safetensors").extra["class_thresholds"]
    assert thresholds.shape == (len(load_checkpoint(final).class_names),)
    # measured 0.16-0.19 for the classes the toy model predicts, the cap 0.9 for the others: wide margins
    assert ((thresholds > 0) & (thresholds <= 0.9)).all() and (thresholds < 0.9).any()


def test_a_method_written_outside_the_package_is_one_class_and_one_registry_call(toy, tmp_path):
    """A toy method (entropy of the fused prediction) registered once is accepted by the config,
    `stpl adapt --method` and `stpl bench --methods`."""
    from stpl.adapt import register_method
    from stpl.adapt.base import AdaptationMethod
    from stpl.cli import main
    from stpl.config import METHOD_NAMES
    from stpl.engine.checkpoint import load_checkpoint
    from stpl.losses.entropy import entropy_map

    class Sharpen(AdaptationMethod):
        name = "sharpen"

        def __init__(self, model, config, seed=0):
            super().__init__(model, config)

        def step(self, batch, step):
            output = self.model(batch.current, batch.previous, batch.flow)
            return {"loss_entropy": entropy_map(output.logits).mean()}

    settings, source = toy
    sets = [arg for setting in settings for arg in ("--set", setting)]
    names_before, methods_before = list(METHOD_NAMES), dict(METHODS)
    try:
        register_method("sharpen", Sharpen, "entropy minimisation of the whole network (a test's method)")
        out = tmp_path / "adapted"
        assert main(["adapt", "--source-ckpt", str(source), "--out", str(out), "--method", "sharpen", *sets]) == 0
        assert load_checkpoint(out / "model.safetensors").meta["method"] == "sharpen"
        bench = ["bench", "--benchmark", "synthetic", "--methods", "sharpen", "--seeds", "0", "--out", str(tmp_path)]
        assert main([*bench, *sets]) == 0
    finally:  # the registry is the package's: leave it as it was
        METHOD_NAMES[:] = names_before
        METHODS.clear()
        METHODS.update(methods_before)
