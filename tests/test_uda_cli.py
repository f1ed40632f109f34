"""The UDA baselines end to end: which splits `stpl adapt` opens for them (the labelled source split and the
unlabelled target adaptation split, never target labels nor the evaluation split), `uses_source` in every run and
table, resuming with discriminator and phase state, and refusals where no source data can exist."""

import json

import pytest
import torch

from conftest import TOY_SETTINGS, set_args
from stpl.adapt import METHODS
from stpl.cli import main
from stpl.engine.checkpoint import load_checkpoint

UDA = [name for name, entry in METHODS.items() if entry.method is not None and entry.method.uses_source]


def test_the_six_uda_rows_are_registered():
    assert UDA == ["uda-fda", "uda-pixmatch", "uda-rda", "uda-davsn", "uda-vatvst", "uda-tps"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("uda")
    settings = [*TOY_SETTINGS, f"flow.cache_dir={root / 'flow-cache'}"]
    out = root / "source"
    assert main(["train-source", "--out", str(out), *set_args(settings)]) == 0
    return settings, out / "model.safetensors"


def adapt_args(source, out, settings):
    return ["adapt", "--source-ckpt", str(source), "--out", str(out), *set_args(settings)]


@pytest.mark.parametrize("name", UDA)
def test_uda_opens_source_labels_and_unlabelled_target_only(name, toy, tmp_path, opened_splits):
    settings, source = toy
    extra = ["adapt.uda.fda_self_training=true"] if name == "uda-fda" else []
    assert main(adapt_args(source, tmp_path / name, [*settings, f"adapt.method={name}", *extra])) == 0
    assert opened_splits == [("adapt", False), ("source", True)]  # never target labels, never the eval split
    adapted = load_checkpoint(tmp_path / name / "model.safetensors")
    assert adapted.meta["uses_source"] is True and adapted.meta["method"] == name and adapted.step == 3
    metrics = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert all("loss_source" in m or "loss_vst" in m for m in metrics)  # VAT-VST's phase 2 is target-only


def test_a_source_free_run_records_that_it_used_no_source(toy, tmp_path, opened_splits):
    settings, source = toy
    assert main(adapt_args(source, tmp_path / "tent", [*settings, "adapt.method=tent"])) == 0
    assert opened_splits == [("adapt", False)]
    assert load_checkpoint(tmp_path / "tent" / "model.safetensors").meta["uses_source"] is False


@pytest.mark.parametrize(("name", "sets"), [("uda-davsn", []), ("uda-vatvst", ["adapt.uda.vatvst_vat_share=0.25"])])
def test_interrupted_uda_run_resumes_to_the_same_result(name, sets, toy, tmp_path, monkeypatch):
    """Discriminators, their Adam state and (VAT-VST, switched at step 1) the frozen phase-1 teacher are restored:
    the resumed run ends where the straight one does."""
    settings, source = toy
    settings = [*settings, f"adapt.method={name}", "adapt.iterations=4", "adapt.checkpoint_every=2", *sets]
    assert main(adapt_args(source, tmp_path / "straight", settings)) == 0
    method_class = METHODS[name].method
    original_step = method_class.step

    def crash_at_step_three(self, batch, step):
        if step == 2:
            raise KeyboardInterrupt
        return original_step(self, batch, step)

    monkeypatch.setattr(method_class, "step", crash_at_step_three)
    assert main(adapt_args(source, tmp_path / "interrupted", settings)) == 130
    monkeypatch.setattr(method_class, "step", original_step)
    assert main(adapt_args(source, tmp_path / "interrupted", settings)) == 0
    straight = load_checkpoint(tmp_path / "straight" / "model.safetensors")
    resumed = load_checkpoint(tmp_path / "interrupted" / "model.safetensors")
    for key, value in straight.model.items():  # same process, same kernels: expected bit-identical (see baselines)
        torch.testing.assert_close(resumed.model[key], value, msg=key)
    extra = load_checkpoint(tmp_path / "interrupted" / "checkpoint_last.safetensors").extra
    assert any(key.startswith("discriminator.") for key in extra)
    assert any(key.startswith("discriminator_optimizer.") for key in extra)


def test_uda_is_refused_where_there_is_no_source_data(toy, tmp_path, capsys):
    settings, source = toy
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2
    import numpy as np

    for index in range(3):
        cv2.imwrite(str(frames / f"{index:03d}.png"), np.full((33, 47, 3), 40 * index, np.uint8))
    own_video = [*settings, "data.dataset=frames", f"data.frames.path={frames}", "adapt.method=uda-fda"]
    assert main(adapt_args(source, tmp_path / "out", own_video)) == 2
    assert "labelled source data" in capsys.readouterr().err
    online = ["predict", "--ckpt", str(source), "--input", str(frames), "--out", str(tmp_path / "p"),
              "--adapt", "online", "--method", "uda-tps"]  # fmt: skip
    with pytest.raises(SystemExit):  # not among --method's choices
        main(online)


def test_bench_marks_the_rows_that_use_source_data(toy, tmp_path):
    settings, _ = toy
    out = tmp_path / "bench"
    args = ["bench", "--benchmark", "synthetic", "--methods", "source-only,tent,uda-tps", "--seeds", "0"]
    assert main([*args, "--out", str(out), *set_args(settings)]) == 0
    runs = {run["method"]: run for run in json.loads((out / "results.json").read_text())["runs"]}
    assert [runs[m]["uses_source"] for m in ("source-only", "tent", "uda-tps")] == [False, False, True]
    table = (out / "results.md").read_text()
    assert "| uda-tps (uses source data) | 1 |" in table and "| tent | 1 |" in table


def test_each_uda_rows_default_source_normalisation_is_written_into_the_recorded_config(toy, tmp_path):
    from stpl.adapt import with_method_defaults
    from stpl.config import build_config

    def resolved(*sets):
        return with_method_defaults(build_config(sets=list(sets))).adapt.uda.source_statistics

    assert resolved("adapt.method=uda-pixmatch") == "shared" and resolved("adapt.method=uda-fda") == "own"
    assert resolved("adapt.method=uda-pixmatch", "adapt.uda.source_statistics=own") == "own"  # as set
    assert resolved("adapt.method=stpl") == "default"  # source-free: nothing to settle
    settings, source = toy
    out = tmp_path / "pixmatch"
    assert main(adapt_args(source, out, [*settings, "adapt.method=uda-pixmatch", "adapt.iterations=1"])) == 0
    assert "source_statistics: shared" in (out / "config.yaml").read_text()
