"""Every command end to end at toy size, plus the bad-input contract: one line, non-zero exit, nothing overwritten."""

import json

import pytest
import torch
import yaml

from stpl.adapt.stpl import STPL
from stpl.cli import main
from stpl.engine.checkpoint import load_checkpoint


def set_args(settings):
    return [arg for setting in settings for arg in ("--set", setting)]


@pytest.fixture
def source_ckpt(tmp_path, toy_settings):
    out = tmp_path / "source"
    assert main(["train-source", "--out", str(out), *set_args(toy_settings)]) == 0
    return out / "model.safetensors"


def test_train_source_writes_config_metrics_and_checkpoint(source_ckpt, toy_settings):
    run = source_ckpt.parent
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["backbone"] == "tiny"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4]
    checkpoint = load_checkpoint(source_ckpt)
    assert checkpoint.step == 4 and checkpoint.meta["kind"] == "source"
    assert checkpoint.class_names[0] == "sky" and checkpoint.config["data"]["height"] == 33


@pytest.mark.parametrize(
    "extra",
    [
        ["model.fusion=concat", "adapt.loss_form=seed"],
        [
            "model.fusion=conv",
            "adapt.teacher_later=true",
            "adapt.later_error_limit=1.5",
            "adapt.temporal_ensemble=true",
        ],
        [
            "model.fusion=add",
            "adapt.loss_form=infonce",
            "adapt.cross_frame_keys=true",
            "adapt.student_augmentation=1.0",
        ],
        ["model.fusion=conv", "adapt.teacher=current", "adapt.norm=update", "adapt.temporal_agreement=true"],
        [
            "model.fusion=attention",
            "adapt.teacher=source",
            "adapt.confidence=global",
            "adapt.threshold=0.2",
            "adapt.norm=frozen",
        ],
    ],
)
def test_adapt_then_eval(tmp_path, source_ckpt, toy_settings, extra, opened_splits):
    out = tmp_path / "adapted"
    settings = [*toy_settings, *extra]
    assert main(["adapt", "--source-ckpt", str(source_ckpt), "--out", str(out), *set_args(settings)]) == 0
    assert opened_splits == [("adapt", False)]  # source-free: only unlabelled target video was opened
    adapted = load_checkpoint(out / "model.safetensors")
    assert adapted.meta["kind"] == "adapted" and adapted.step == 3
    fusion = extra[0].split("=")[1]
    assert adapted.config["model"]["fusion"] == fusion
    source = load_checkpoint(source_ckpt)
    changed = [
        k
        for k in source.model
        if not k.startswith(("fusion.", "projection."))
        and source.model[k].is_floating_point()
        and not (source.model[k] == adapted.model[k]).all()
    ]
    assert changed  # adaptation moved the network
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all("loss_contrast" in m and "loss_pl" in m for m in metrics)

    eval_dir = tmp_path / "eval"
    assert (
        main(["eval", "--ckpt", str(out / "model.safetensors"), "--out", str(eval_dir), *set_args(toy_settings)]) == 0
    )
    result = json.loads((eval_dir / "eval.json").read_text())
    assert set(result) >= {"mIoU", "per_class", "classes", "num_frames", "checkpoint", "config", "checkpoint_sha1"}
    assert result["checkpoint_config"] == load_checkpoint(out / "model.safetensors").config  # the adapted run's own
    assert result["checkpoint_config"]["adapt"]["iterations"] == 3
    assert 0.0 <= result["mIoU"] <= 100.0
    assert result["num_frames"] == 4  # 2 clips x (3 frames - gap 1)
    assert list(result["per_class"]) == result["classes"]


def test_interrupted_adaptation_resumes_to_the_same_result(tmp_path, source_ckpt, toy_settings, monkeypatch, capsys):
    settings = [*toy_settings, "adapt.iterations=4", "adapt.checkpoint_every=2", "adapt.teacher=ema"]

    def args(out):
        return ["adapt", "--source-ckpt", str(source_ckpt), "--out", str(out), *set_args(settings)]

    assert main(args(tmp_path / "straight")) == 0
    straight = load_checkpoint(tmp_path / "straight" / "model.safetensors")

    original_step = STPL.step

    def crash_at_step_three(self, batch, step):
        if step == 2:
            raise KeyboardInterrupt
        return original_step(self, batch, step)

    monkeypatch.setattr(STPL, "step", crash_at_step_three)
    assert main(args(tmp_path / "interrupted")) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "interrupted" / "checkpoint_last.safetensors").step == 2
    assert not (tmp_path / "interrupted" / "model.safetensors").exists()
    monkeypatch.setattr(STPL, "step", original_step)
    assert main(args(tmp_path / "interrupted")) == 0
    assert "resuming from step 2" in capsys.readouterr().out
    resumed = load_checkpoint(tmp_path / "interrupted" / "model.safetensors")
    # Same batches, kernels and thread count in one process, state restored bit for bit: expected bit-identical;
    # the default tolerance (~11 ulps) only forgives what a lost RNG, teacher or optimiser state never would.
    for key, value in straight.model.items():
        torch.testing.assert_close(resumed.model[key], value, msg=key)
    # A finished run is recognised and reused, not retrained.
    assert main(args(tmp_path / "interrupted")) == 0
    assert "reusing it" in capsys.readouterr().out


def test_demo_writes_summary(tmp_path, toy_settings, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *set_args(toy_settings)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for row in ("source_only", "stpl", "oracle"):
        assert 0.0 <= summary[row]["mIoU"] <= 100.0
    assert summary["seconds"] > 0
    printed = capsys.readouterr().out
    assert "source_only" in printed and "oracle" in printed


def test_show_config(capsys, toy_settings):
    assert main(["show-config", *set_args([*toy_settings, "adapt.temperature=0.07"])]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    # exact: 0.07 is printed with repr's shortest round-trip digits and read back to the same double
    assert shown["adapt"]["temperature"] == 0.07 and shown["model"]["backbone"] == "tiny"


# -- bad input -----------------------------------------------------------------------------------------------


def run_failing(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_config_typo_fails_before_work(tmp_path, capsys):
    out = tmp_path / "never"
    err = run_failing(["train-source", "--out", str(out), "--set", "adapt.temprature=0.1"], capsys)
    assert "adapt.temprature" in err
    assert not out.exists()


def test_missing_checkpoint_and_config(tmp_path, capsys):
    err = run_failing(
        ["adapt", "--source-ckpt", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "o")], capsys
    )
    assert "nope.safetensors" in err
    err = run_failing(
        ["eval", "--ckpt", str(tmp_path / "x"), "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")],
        capsys,
    )
    assert "c.yaml" in err
    assert not (tmp_path / "o").exists()


def test_class_count_mismatch_names_the_file(tmp_path, source_ckpt, toy_settings, capsys):
    from stpl.engine.checkpoint import save_checkpoint

    checkpoint = load_checkpoint(source_ckpt)
    wrong = tmp_path / "three_classes.safetensors"
    save_checkpoint(wrong, checkpoint.model, {**checkpoint.meta, "class_names": ["a", "b", "c"]})
    err = run_failing(["eval", "--ckpt", str(wrong), "--out", str(tmp_path / "o"), *set_args(toy_settings)], capsys)
    assert "three_classes.safetensors" in err and "3 classes" in err


def test_run_folder_of_another_config_is_not_overwritten(tmp_path, source_ckpt, toy_settings, capsys):
    run = source_ckpt.parent
    before = source_ckpt.read_bytes()
    err = run_failing(["train-source", "--out", str(run), *set_args([*toy_settings, "train.lr=0.5"])], capsys)
    assert "another config or source model (differs in train.lr)" in err
    assert source_ckpt.read_bytes() == before
    # settings that do not change the result (threads, logging, flow workers) reuse the finished run
    assert main(["train-source", "--out", str(run), *set_args([*toy_settings, "train.log_every=1", "threads=1"])]) == 0
    assert "reusing it" in capsys.readouterr().out
    # nor do adaptation settings: the source model does not read them
    assert main(["train-source", "--out", str(run), *set_args([*toy_settings, "adapt.iterations=7"])]) == 0
    assert "reusing it" in capsys.readouterr().out


def test_adapting_another_source_model_into_a_finished_folder_is_refused(tmp_path, source_ckpt, toy_settings, capsys):
    out = tmp_path / "adapted"
    assert main(["adapt", "--source-ckpt", str(source_ckpt), "--out", str(out), *set_args(toy_settings)]) == 0
    other = tmp_path / "other"
    assert main(["train-source", "--out", str(other), *set_args([*toy_settings, "seed=1"])]) == 0
    before = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    args = ["adapt", "--source-ckpt", str(other / "model.safetensors"), "--out", str(out), *set_args(toy_settings)]
    err = run_failing(args, capsys)
    assert "another config or source model" in err and (out / "model.safetensors").read_bytes() == before


def test_eval_without_config_scores_on_the_data_the_checkpoint_was_made_for(tmp_path, source_ckpt, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--ckpt", str(source_ckpt), "--out", str(out)]) == 0  # no --config, no --set
    assert "settings from" in capsys.readouterr().out
    result = json.loads((out / "eval.json").read_text())
    assert result["config"]["data"]["height"] == 33 and result["num_frames"] == 4  # the toy data, not the defaults


def test_a_run_made_before_a_config_key_existed_is_still_reused(tmp_path, source_ckpt, toy_settings, capsys):
    """Identities stored by older versions lack keys added since: at their defaults, they count as the same run."""
    from stpl.engine.checkpoint import save_checkpoint

    checkpoint = load_checkpoint(source_ckpt)
    identity = json.loads(json.dumps(checkpoint.meta["identity"]))
    del identity["train"]["amp"]  # as a run folder written before train.amp existed
    run = tmp_path / "older"
    save_checkpoint(run / "model.safetensors", checkpoint.model, {**checkpoint.meta, "identity": identity})
    capsys.readouterr()
    assert main(["train-source", "--out", str(run), *set_args(toy_settings)]) == 0
    assert "finished run found" in capsys.readouterr().out
    err = run_failing(["train-source", "--out", str(run), *set_args([*toy_settings, "train.amp=bf16"])], capsys)
    assert "differs in train.amp" in err


def test_speed_writes_step_inference_and_flow_figures_with_their_ratios(tmp_path):
    out = tmp_path / "speed"
    sets = ["model.backbone=tiny", "model.pretrained=false", "model.feature_channels=16", "model.projection_dim=8",
            "data.height=33", "data.width=47", "adapt.batch_size=2", "adapt.anchors_per_class=8",
            "threads=1"]  # fmt: skip
    args = ["speed", "--out", str(out), "--repeats", "1", "--frames", "3", "--online", "tent", "--online-fps", "1e6"]
    assert main([*args, *set_args(sets)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert set(result["ratios"]) >= {"stpl/supervised", "stpl/self-training", "temporal-cached/single-frame"}
    assert all(value > 0 for value in result["ratios"].values()) and result["flow_default_pairs_per_s"] > 0
    assert set(result["flow_pairs_per_s_480x360"]) == {"ultrafast", "fast", "medium"}
    assert "| stpl/supervised |" in (out / "results.md").read_text()
    assert result["predict"]["checkpoint"] == "camvid-day" and result["predict"]["frames_per_s"] > 0
    online = result["predict_online"]  # every frame updates; at a rate no machine keeps, only the first
    assert online["tent, every frame"]["updates"] == 3 and online["tent, --fps 1e+06"]["updates"] == 1
    assert all(row["frames_per_s"] > 0 for row in online.values())
    assert "| tent, every frame |" in (out / "results.md").read_text()


def test_every_command_describes_itself_and_every_option_has_help():
    import argparse

    from stpl.cli import build_parser

    parser = build_parser()
    assert "each an add_parser" not in (parser.description or "") and "stpl predict" in parser.description
    pending = [("stpl", parser)]
    missing = []
    while pending:
        name, current = pending.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending += [(f"{name} {sub}", child) for sub, child in action.choices.items()]
                for sub, child in action.choices.items():
                    if not child.description:
                        missing.append(f"{name} {sub}: no description")
            elif action.option_strings and action.help in (None, "") and action.dest != "help":
                missing.append(f"{name} {action.option_strings[0]}: no help")
    assert missing == []


def test_flow_clear_cache_removes_the_cached_flow_and_nothing_else(tmp_path, capsys):
    from conftest import TOY_SETTINGS, set_args
    from stpl.cli import main

    cache = tmp_path / "flow"
    settings = set_args([*TOY_SETTINGS, f"flow.cache_dir={cache}"])
    assert main(["flow", *settings]) == 0
    entries = list(cache.rglob("*_int16_x10.npy"))
    assert entries and len(list(cache.rglob("*.sum"))) == len(entries)
    (cache / "notes.txt").write_text("the user's")
    capsys.readouterr()
    assert main(["flow", "--clear-cache", *settings]) == 0
    assert f"removed {2 * len(entries)} files" in capsys.readouterr().out
    assert sorted(path.name for path in cache.rglob("*")) == ["notes.txt"]
