"""scripts/label_free_table.py: Spearman with ties by hand, the direction of (source, adapted) pairs, a stream
bench scored on the stream, and the auto row."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "label_free_table.py"


def load_script():
    spec = importlib.util.spec_from_file_location("label_free_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spearman_by_hand():
    table = load_script()
    assert table.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert table.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert table.spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # ranks (1, 2, 3) and (1, 3, 2): d = (0, 1, 1), 1 - 6 * 2 / (3 * 8) = 0.5
    assert table.spearman([1, 2, 3], [5, 9, 7]) == pytest.approx(0.5)
    assert table.spearman([1, 2], [1, 2]) is None and table.spearman([1, 1, 1], [1, 2, 3]) is None


def stream_run(method, seed, miou, estimate, source_estimate):
    estimated = {"kind": "temporal", "estimate": estimate, "reference_estimate": source_estimate,
                 "parts": {"temporal_miou": estimate / 100}, "counts": {"temporal": [[1.0]]}}  # fmt: skip
    return {"method": method, "seed": seed, "mIoU": miou, "estimate": estimated}


def test_a_stream_bench_scores_source_only_by_the_source_model_on_the_stream(tmp_path):
    table = load_script()
    runs = [
        {"method": "source-only", "seed": 0, "mIoU": 30.0, "estimate": None},
        stream_run("tent-online", 0, 35.0, 50.0, 40.0),  # right: better and scored higher than the source's 40
        stream_run("stpl-online", 0, 28.0, 45.0, 40.0),  # wrong: 2 points worse, scored 5 higher
        stream_run("norm-online", 0, 30.5, 10.0, 40.0),  # within the margin: not a pair
        {"method": "oracle", "seed": 0, "mIoU": 60.0, "estimate": None},
    ]
    (tmp_path / "bench" / "stream").mkdir(parents=True)
    (tmp_path / "bench" / "stream" / "results.json").write_text(json.dumps({"runs": runs, "commit": "abc"}))
    assert table.main(["--results", str(tmp_path / "bench"), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert summary["direction"] == {"pairs": 2, "right": 1, "share": 0.5}
    row = summary["benchmarks"]["stream"]
    assert row["runs"] == 4  # source-only and three online runs; the oracle left out
    # estimates (40, 50, 45, 10) against mIoU (30, 35, 28, 30.5): ranks (2, 4, 3, 1) and (2, 4, 1, 3)
    assert row["spearman_estimate"] == pytest.approx(1 - 6 * (0 + 0 + 4 + 4) / (4 * 15))
    assert "Wrong way round" in (tmp_path / "out" / "results.md").read_text()


def test_auto_row_against_source_and_the_best_single_method():
    table = load_script()
    rows = [
        ("source-only", 0, 40.0, None),
        ("source-only", 1, 42.0, None),
        ("stpl", 0, 45.0, None),
        ("stpl", 1, 41.0, None),
        ("auto", 0, 45.0, {"chosen": "stpl"}),
        ("auto", 1, 42.0, {"chosen": "source"}),
    ]
    runs = [{"method": m, "seed": s, "mIoU": v, "auto_choice": c} for m, s, v, c in rows]
    row = table.auto_rows(runs)
    for run in runs:
        run.update(estimate=run["mIoU"], adapt_split_mIoU=None, parts={})
    assert table.benchmark_rows("b", runs)["auto"] == row and table.benchmark_rows("b", runs)["runs"] == 4
    assert row["best_single"] == "stpl" and row["best_single_mean"] == pytest.approx(43.0)
    assert row["mean"] == pytest.approx(43.5) and row["below_source_seeds"] == []
    assert row["chosen"] == {"0": "stpl", "1": "source"}


def test_guard_rows_count_resets_and_seeds_below_source_only(tmp_path):
    table = load_script()
    checks_kept = [{"reset": False, "frame_statistics": 1.0}] * 2
    checks_sent_back = [{"reset": False, "frame_statistics": 1.0}, {"reset": True, "frame_statistics": 0.0}]
    runs = [
        {"method": "source-only", "seed": 0, "mIoU": 40.0, "estimate": None},
        {"method": "source-only", "seed": 1, "mIoU": 42.0, "estimate": None},
        {**stream_run("auto-online", 0, 45.0, 60.0, 50.0), "health": {"guard_checks": checks_kept}},
        {**stream_run("auto-online", 1, 41.0, 48.0, 50.0), "health": {"guard_checks": checks_sent_back}},
        stream_run("stpl-online", 0, 45.0, 60.0, 50.0),
        stream_run("stpl-online", 1, 39.0, 45.0, 50.0),
    ]
    (tmp_path / "bench" / "stream").mkdir(parents=True)
    (tmp_path / "bench" / "stream" / "results.json").write_text(json.dumps({"runs": runs, "commit": "abc"}))
    assert table.main(["--results", str(tmp_path / "bench"), "--out", str(tmp_path / "out")]) == 0
    row = json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]["stream"]
    guard = row["guard"]["auto-online"]
    assert guard["seeds"] == 2 and guard["mIoU"] == pytest.approx(43.0) and guard["source_only"] == pytest.approx(41.0)
    assert guard["below_source_seeds"] == [1] and (guard["resets"], guard["checks"]) == (1, 4)
    assert guard["final_frame_statistics"] == [1.0, 0.0]
    assert row["auto"]["method"] == "auto-online" and row["auto"]["below_source_seeds"] == [1]
    assert row["runs"] == 4  # auto-online, a variant of stpl-online, is left out of the Spearman
    assert (
        "| stream | auto-online | 2 | 43.0 | 41.0 | [1] | 1 / 4 | [1.0, 0.0] |"
        in (tmp_path / "out" / "results.md").read_text()
    )
