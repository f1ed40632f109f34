"""scripts/merge_results.py adds a later bench's rows to a committed table, each run kept as recorded."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "merge_results.py"


def run(method, seed, miou, commit, uses_source=False):
    return {"method": method, "seed": seed, "mIoU": miou, "per_class": {"a": miou, "b": miou},
            "uses_source": uses_source, "commit": commit, "config": {"eval": {"split": "eval"}}}  # fmt: skip


def write(folder: Path, runs, commit):
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"benchmark": "camvid-dusk", "commit": commit, "runs": runs}))


def merge(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_rows_are_added_with_their_own_commit_when_source_only_matches(tmp_path):
    table, new = tmp_path / "table", tmp_path / "new"
    write(table, [run("source-only", 0, 40.0, "old"), run("stpl", 0, 50.0, "old")], "old")
    write(new, [run("source-only", 0, 40.004, "new"), run("uda-tps", 0, 47.0, "new", True)], "new")
    done = merge(table, new, "--methods", "uda-tps", "--check-source-only")
    assert done.returncode == 0, done.stderr
    results = json.loads((table / "results.json").read_text())
    assert [(r["method"], r["commit"]) for r in results["runs"]] == [("source-only", "old"), ("stpl", "old"),
                                                                      ("uda-tps", "new")]  # fmt: skip
    assert results["summary"]["uda-tps"]["mIoU_mean"] == 47.0 and results["summary"]["uda-tps"]["uses_source"]
    assert results["merged"][-1] == {"commit": "new", "methods": ["uda-tps"], "source_only_checked": True}
    markdown = (table / "results.md").read_text()
    assert "old (source-only, stpl); new (uda-tps)" in markdown and "| uda-tps (uses source data) | 1 |" in markdown


def test_a_merge_is_refused_when_the_source_models_score_otherwise_or_a_row_exists(tmp_path):
    table, new = tmp_path / "table", tmp_path / "new"
    write(table, [run("source-only", 0, 40.0, "old"), run("stpl", 0, 50.0, "old")], "old")
    write(new, [run("source-only", 0, 40.5, "new"), run("uda-tps", 0, 47.0, "new", True), run("stpl", 0, 1.0, "n")],
          "new")  # fmt: skip
    before = (table / "results.json").read_text()
    refused = merge(table, new, "--methods", "uda-tps", "--check-source-only")
    assert refused.returncode != 0 and "source-only differs" in refused.stderr
    assert merge(table, new, "--methods", "stpl").returncode != 0  # already in the table
    assert (table / "results.json").read_text() == before


def test_replaced_rows_move_to_their_own_table_and_the_new_ones_take_their_place(tmp_path):
    table, new, kept = tmp_path / "table", tmp_path / "new", tmp_path / "superseded"
    old_runs = [run("source-only", 0, 40.0, "old"), run("stpl", 0, 50.0, "old"), run("uda-tps", 0, 30.0, "mid", True)]
    write(table, old_runs, "old")
    write(new, [run("source-only", 0, 40.0, "new"), run("uda-tps", 0, 47.0, "new", True)], "new")
    done = merge(table, new, "--methods", "uda-tps", "--check-source-only", "--replace-into", kept)
    assert done.returncode == 0, done.stderr
    results = json.loads((table / "results.json").read_text())
    assert [(r["method"], r["commit"]) for r in results["runs"]] == [("source-only", "old"), ("stpl", "old"),
                                                                      ("uda-tps", "new")]  # fmt: skip
    assert results["summary"]["uda-tps"]["mIoU_mean"] == 47.0
    assert results["merged"][-1]["replaced"] == {"methods": ["uda-tps"], "kept_in": str(kept)}
    old = json.loads((kept / "results.json").read_text())
    assert [(r["method"], r["mIoU"]) for r in old["runs"]] == [("source-only", 40.0), ("uda-tps", 30.0)]
    assert "| uda-tps (uses source data) | 1 | 30.0" in (kept / "results.md").read_text()
    again = merge(table, new, "--methods", "uda-tps", "--replace-into", kept)  # the folder already holds a table
    assert again.returncode != 0 and "already holds" in again.stderr
