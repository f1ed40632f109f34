"""--method auto (selection.py): the choice by hand, a collapsed candidate never chosen, `stpl adapt --method auto`
on one's own frames, and the bench row that reuses the bench's own candidate runs."""

import json
from pathlib import Path

import pytest

from conftest import clip, write_folder
from stpl.cli import main
from stpl.config import build_config
from stpl.errors import StplError
from stpl.selection import SOURCE, check_candidates, choose, choose_and_copy


def test_choose_by_hand():
    assert choose({SOURCE: 50.0, "adabn": 50.4, "stpl": 52.0}, margin=0.5)[0] == "stpl"
    chosen, reason = choose({SOURCE: 50.0, "adabn": 40.0, "stpl": 49.0}, margin=0.5)
    assert chosen == SOURCE and reason.startswith("kept the source model: every adapted candidate scored lower")
    chosen, reason = choose({SOURCE: 50.0, "adabn": 50.3}, margin=0.5)  # higher, but not by the margin
    assert chosen == SOURCE and "no adapted candidate beat" in reason
    assert choose({SOURCE: 50.0}, margin=0.0)[0] == SOURCE


def test_auto_refuses_candidates_that_use_source_data():
    with pytest.raises(StplError, match="use source data"):
        check_candidates(("stpl", "uda-fda"))


def test_a_collapsed_candidate_is_never_chosen(toy_checkpoint, collapsed_checkpoint, toy_settings, tmp_path):
    config = build_config(sets=toy_settings)
    final = choose_and_copy(config, {SOURCE: toy_checkpoint, "collapsed": collapsed_checkpoint}, tmp_path / "auto")
    choice = json.loads((tmp_path / "auto" / "choice.json").read_text())
    assert choice["chosen"] == SOURCE and "every adapted candidate scored lower" in choice["reason"]
    assert final.read_bytes() == toy_checkpoint.read_bytes()  # the source model's weights, as they were


def test_adapt_auto_on_own_frames(toy_checkpoint, tmp_path, capsys):
    frames = write_folder(tmp_path / "frames", clip(4))
    out = tmp_path / "auto"
    args = ["adapt", "--source-ckpt", str(toy_checkpoint), "--method", "auto", "--out", str(out),
            "--set", "data.dataset=frames", "--set", f"data.frames.path={frames}",
            "--set", "adapt.auto_candidates=[adabn, stpl]", "--set", "adapt.iterations=2",
            "--set", "adapt.batch_size=2", "--set", f"flow.cache_dir={tmp_path / 'flow'}"]  # fmt: skip
    assert main(args) == 0
    choice = json.loads((out / "choice.json").read_text())
    assert set(choice["candidates"]) == {SOURCE, "adabn", "stpl"} and choice["frames"] == 4
    chosen = choice["candidates"][choice["chosen"]]["checkpoint"]
    assert (out / "model.safetensors").read_bytes() == Path(chosen).read_bytes()
    assert choice["reason"] in capsys.readouterr().out
    # another margin: the candidates are reused (auto's settings are no part of their identity), the choice remade
    assert main([*args, "--set", "adapt.auto_margin=1000"]) == 0
    assert capsys.readouterr().out.count("finished run found") == 2
    assert json.loads((out / "choice.json").read_text())["chosen"] == SOURCE


def test_adapt_ends_with_a_comparison_with_the_source_model(toy_checkpoint, tmp_path, capsys):
    frames = write_folder(tmp_path / "frames", clip(4))
    out = tmp_path / "adabn"
    args = ["adapt", "--source-ckpt", str(toy_checkpoint), "--method", "adabn", "--out", str(out),
            "--set", "data.dataset=frames", "--set", f"data.frames.path={frames}",
            "--set", f"flow.cache_dir={tmp_path / 'flow'}"]  # fmt: skip
    assert main(args) == 0
    comparison = json.loads((out / "estimate.json").read_text())
    assert comparison["source"]["parts"]["source_miou"] == pytest.approx(1.0)
    assert comparison["sentence"] in capsys.readouterr().out
    assert "than the source model on this video" in comparison["sentence"] or "no different" in comparison["sentence"]


def test_bench_auto_row_reuses_the_bench_runs(tmp_path, toy_settings):
    out = tmp_path / "bench"
    args = ["bench", "--benchmark", "synthetic", "--methods", "source-only,adabn,stpl,auto", "--seeds", "0",
            "--out", str(out), "--set", "adapt.auto_candidates=[adabn, stpl]"]  # fmt: skip
    args += [arg for setting in toy_settings for arg in ("--set", setting)]
    assert main(args) == 0
    runs = {run["method"]: run for run in json.loads((out / "results.json").read_text())["runs"]}
    auto = runs["auto"]
    chosen = auto["auto_choice"]["chosen"]
    same = runs["source-only" if chosen == SOURCE else chosen]
    assert auto["mIoU"] == same["mIoU"]  # the chosen model's weights, scored again
    assert (
        auto["auto_choice"]["estimates"][chosen] == pytest.approx(max(auto["auto_choice"]["estimates"].values()))
        or chosen == SOURCE
    )
    assert not list(out.glob("runs/auto/*/candidates"))  # the bench's own adabn and stpl runs were the candidates
    assert auto["adapt_seconds"] >= runs["adabn"]["adapt_seconds"] + runs["stpl"]["adapt_seconds"]  # and cost it
    for run in runs.values():
        assert 0.0 <= run["estimate"]["estimate"] <= 100.0 and run["adapt_split_mIoU"] is not None
    # an adaptation's estimate is the one `stpl adapt` wrote beside its model, not computed a second time
    written = json.loads((Path(runs["stpl"]["checkpoint"]).parent / "estimate.json").read_text())["adapted"]
    assert runs["stpl"]["estimate"] == written


def test_the_closing_sentence_by_hand():
    from stpl.estimation import compare_sentence

    assert "looks better" in compare_sentence(45.0, 40.0, margin=2.0)
    assert "looks WORSE" in compare_sentence(35.0, 40.0, margin=2.0) and "keep the source" in compare_sentence(
        35.0, 40.0, margin=2.0
    )
    assert "no different" in compare_sentence(41.5, 40.0, margin=2.0)


def test_a_key_declared_no_result_since_does_not_make_a_run_another():
    from stpl.engine.run_folder import differing_keys

    stored = {"adapt": {"lr": 0.1, "auto_margin": 0.5}}  # made when auto_margin was part of identities
    assert differing_keys(stored, {"adapt": {"lr": 0.1}}) == []
    assert differing_keys(stored, {"adapt": {"lr": 0.2}}) == ["adapt.lr"]
    assert differing_keys({"adapt": {"lr": 0.1, "unknown_key": 1}}, {"adapt": {"lr": 0.1}}) == ["adapt.unknown_key"]
