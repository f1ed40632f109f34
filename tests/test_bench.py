"""`stpl bench` and `stpl flow` end to end at toy size."""

import json
from pathlib import Path

import pytest

from stpl.cli import main


def set_args(settings):
    return [arg for setting in settings for arg in ("--set", setting)]


def test_bench_runs_methods_and_seeds_then_skips_them(tmp_path, toy_settings, capsys):
    out = tmp_path / "bench"
    args = ["bench", "--benchmark", "synthetic", "--methods", "source-only,adabn,stpl,oracle", "--seeds", "0,1",
            "--out", str(out), *set_args(toy_settings)]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "synthetic" and results["commit"]
    assert [(r["method"], r["seed"]) for r in results["runs"]] == [
        (m, s) for s in (0, 1) for m in ("source-only", "adabn", "stpl", "oracle")
    ]
    for run in results["runs"]:
        assert 0 <= run["mIoU"] <= 100 and run["config"]["seed"] == run["seed"]
    summary = results["summary"]
    assert summary["stpl"]["n"] == 2 and summary["oracle"]["reference"] and not summary["stpl"]["reference"]
    values = [r["mIoU"] for r in results["runs"] if r["method"] == "adabn"]
    # a float64 mean of two numbers <= 100: error ~1e-14; 1e-9 fails a mean over the wrong runs
    assert abs(summary["adabn"]["mIoU_mean"] - sum(values) / 2) < 1e-9
    table = (out / "results.md").read_text()
    assert "| stpl | 2 |" in table and "oracle (reference)" in table
    assert len(list((out / "source").iterdir())) == 2  # one source model per seed
    assert (out / "per_class.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("done before, skipped") == 8


def test_changed_adaptation_setting_reruns_adaptation_only(tmp_path, toy_settings, capsys):
    out = tmp_path / "bench"
    args = ["bench", "--benchmark", "synthetic", "--methods", "adabn,oracle", "--seeds", "0", "--out", str(out),
            *set_args(toy_settings)]  # fmt: skip
    assert main(args) == 0
    first = {r["method"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    capsys.readouterr()
    assert main([*args, "--set", "adapt.norm_source_weight=0.5"]) == 0
    printed = capsys.readouterr().out
    # the source model and the oracle do not read adaptation settings: reused, not retrained
    assert "[source] finished run found" in printed and "oracle seed 0: done before, skipped" in printed
    assert "adabn seed 0: done before" not in printed
    second = {r["method"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert second["oracle"]["mIoU"] == first["oracle"]["mIoU"]  # skipped, so the stored number itself
    assert second["adabn"]["config"]["adapt"]["norm_source_weight"] == 0.5
    assert len(list((out / "runs" / "adabn").iterdir())) == 2  # the earlier run's folder is kept beside the new one


def test_bench_bad_input(tmp_path, capsys):
    assert main(["bench", "--benchmark", "nope", "--out", str(tmp_path / "b")]) != 0
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
    assert main(["bench", "--benchmark", "synthetic", "--methods", "stpl,magic", "--out", str(tmp_path / "b")]) != 0
    assert "unknown method 'magic'" in capsys.readouterr().err
    assert main(["bench", "--benchmark", "synthetic", "--seeds", "a", "--out", str(tmp_path / "b")]) != 0
    assert "--seeds" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_flow_command_caches_every_pair(tmp_path, toy_settings, capsys):
    assert main(["flow", *set_args(toy_settings)]) == 0
    cache = tmp_path / "flow-cache"
    files = list(cache.rglob("*_int16_x10.npy"))
    assert len(files) == (3 + 2 + 2) * 2  # clips x (3 frames - gap 1), all three splits
    assert main(["flow", "--split", "eval", *set_args(toy_settings)]) == 0
    assert len(list(cache.rglob("*_int16_x10.npy"))) == len(files)  # nothing recomputed


def test_stpl_variants_run_with_their_overrides(tmp_path, toy_settings):
    out = tmp_path / "bench"
    args = ["bench", "--benchmark", "synthetic", "--methods", "stpl,stpl-notemporal,stpl-attention", "--seeds", "0",
            "--out", str(out), *set_args(toy_settings)]  # fmt: skip
    assert main(args) == 0
    runs = {r["method"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert runs["stpl"]["config"]["model"]["temporal"] is True
    assert runs["stpl-notemporal"]["config"]["model"]["temporal"] is False
    assert runs["stpl-notemporal"]["config"]["adapt"]["method"] == "stpl"
    assert runs["stpl-attention"]["config"]["model"]["fusion"] == "attention"


def test_without_time_pairs_each_frame_with_itself(toy_config):
    from stpl.data import build_dataset

    dataset = build_dataset(toy_config, "eval", with_labels=True)
    control = dataset.without_time()
    assert (control.pairs[:, 0] == control.pairs[:, 1]).all() and (control.pairs[:, 0] == dataset.pairs[:, 0]).all()
    assert not control.flows.any() and dataset.flows.any()
    batch = control.batch([0, 1])
    assert (batch.current == batch.previous).all()


def test_adaptation_curve_from_snapshots(tmp_path, toy_settings):
    out = tmp_path / "bench"
    settings = [*toy_settings, "adapt.iterations=4", "adapt.snapshot_every=2"]
    args = ["bench", "--benchmark", "synthetic", "--methods", "source-only,stpl", "--seeds", "0", "--out", str(out),
            *set_args(settings)]  # fmt: skip
    assert main(args) == 0
    (run_dir,) = (out / "runs" / "stpl").iterdir()  # runs/<method>/seed<s>-<commit>
    snapshots = sorted(p.name for p in (run_dir / "snapshots").iterdir())
    assert snapshots == ["step000002.safetensors", "step000004.safetensors"]
    # the adaptation itself read no labels: the curve is scored afterwards, and its last point is the final model
    # (exact equality: the same weights through the same evaluation code, batches and thread count in one process)
    final = json.loads((run_dir / "eval.json").read_text())["mIoU"]
    last = main(["eval", "--ckpt", str(run_dir / "snapshots" / snapshots[-1]), "--out", str(tmp_path / "e"),
                 *set_args(settings)])  # fmt: skip
    assert last == 0 and json.loads((tmp_path / "e" / "eval.json").read_text())["mIoU"] == final
    assert (out / "adaptation_curves.png").stat().st_size > 1000


def test_runs_are_keyed_by_the_package_source_not_the_whole_commit():
    import subprocess

    from stpl.bench import code_version

    root = Path(__file__).resolve().parents[1]
    try:
        tree = subprocess.run(["git", "rev-parse", "HEAD:src"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    # the tree of src/ only: a commit that changes docs or tests keeps finished runs reusable
    assert code_version().split("+")[0] == tree.stdout.strip()


def test_reuse_source_takes_a_finished_source_model_trained_by_other_code(tmp_path, toy_settings, capsys, monkeypatch):
    import stpl.bench

    first = tmp_path / "first"
    args = ["bench", "--benchmark", "synthetic", "--methods", "source-only", "--seeds", "0", *set_args(toy_settings)]
    assert main([*args, "--out", str(first)]) == 0
    monkeypatch.setattr(stpl.bench, "code_version", lambda: "other-code")  # the package changed since
    second = tmp_path / "second"
    capsys.readouterr()
    assert main([*args, "--out", str(second), "--reuse-source", str(first)]) == 0
    printed = capsys.readouterr().out
    assert "reusing the source model in" in printed and not (second / "source").exists()
    runs = [json.loads((folder / "results.json").read_text())["runs"][0] for folder in (first, second)]
    # exact: the same source weights scored by the same code in this process
    assert runs[0]["mIoU"] == runs[1]["mIoU"] and runs[1]["source"].startswith(str(first))
    # a different source config is not reused: it trains its own
    assert main([*args, "--out", str(tmp_path / "third"), "--reuse-source", str(first), "--set", "train.lr=0.5"]) == 0
    assert (tmp_path / "third" / "source").is_dir()


def test_bench_config_file_applies_over_the_benchmark_config(tmp_path, toy_settings):
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("adapt:\n  norm_source_weight: 0.25\n")
    out = tmp_path / "bench"
    args = ["bench", "--benchmark", "synthetic", "--methods", "adabn", "--seeds", "0", "--out", str(out),
            "--config", str(overrides), *set_args(toy_settings)]  # fmt: skip
    assert main(args) == 0
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert run["config"]["adapt"]["norm_source_weight"] == 0.25 and run["config"]["data"]["height"] == 33


def test_online_methods_adapt_while_predicting_the_evaluation_split(tmp_path, toy_settings, monkeypatch):
    import stpl.online

    seen = []  # (index of the predicted pair, the pairs the update before it used)
    original = stpl.online.OnlineAdapter.update

    def spy(self, batch):
        seen.append(list(batch.index))
        assert batch.label is None  # the adaptation never sees labels
        return original(self, batch)

    monkeypatch.setattr(stpl.online.OnlineAdapter, "update", spy)
    out = tmp_path / "bench"
    sets = [*toy_settings, "adapt.online.window=2", "adapt.online.every=1"]
    args = ["bench", "--benchmark", "synthetic", "--methods", "source-only,tent-online,stpl-online", "--seeds", "0",
            "--out", str(out), *set_args(sets)]  # fmt: skip
    assert main(args) == 0
    runs = {r["method"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert set(runs) == {"source-only", "tent-online", "stpl-online"}
    assert all(0 <= r["mIoU"] <= 100 for r in runs.values())
    # 4 evaluation pairs, one update before each, on the window of pairs up to it (never a later one)
    assert seen[:4] == [[0], [0, 1], [1, 2], [2, 3]]
    # the cost of adapting while predicting, per evaluation frame, in the summary and the table
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert runs["tent-online"]["eval_frames"] == 4
    cost = summary["tent-online"]["seconds_per_frame"]
    assert cost == pytest.approx(runs["tent-online"]["pass_seconds"] / 4) and cost > 0  # one float64 division
    assert runs["tent-online"]["pass_seconds"] < runs["tent-online"]["adapt_seconds"]  # loading not counted
    assert "seconds_per_frame" not in summary["source-only"]
    assert f"({cost:.2f} s/frame)" in (out / "results.md").read_text()
    from stpl.engine.checkpoint import load_checkpoint

    source, adapted = (load_checkpoint(runs[m]["checkpoint"]).model for m in ("source-only", "tent-online"))
    assert any(not (source[k] == adapted[k]).all() for k in source if source[k].is_floating_point())  # it adapted
