"""Add the rows of one bench's results to another's committed table (e.g. new methods run later, from the same
source models), keeping every run as it was recorded: its own commit, code, config and score.

    python scripts/merge_results.py results/camvid-dusk /work/bench/camvid-dusk-uda --methods uda-fda,uda-tps
    python scripts/merge_results.py results/camvid-dusk NEW --methods ... --check-source-only
    python scripts/merge_results.py results/camvid-dusk NEW --methods uda-tps --check-source-only \
        --replace-into results/superseded/camvid-dusk-uda-own-statistics

Runs of a method already in the destination are not added unless --replace-into names a folder: the table's runs
of those methods (with its source-only runs, for the comparison) move there as a table of their own, so the
figures they replace stay on record, and the new runs take their place. With
--check-source-only the merge is refused unless the new bench's source-only runs score what the destination's do,
seed by seed, to 0.01 mIoU: the added rows were then adapted from source models that score as the table's did.
results.json gains a "merged" list saying which methods came from which bench and commit; results.md is rewritten
from the combined runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stpl.atomic import write_json, write_text
from stpl.bench_report import markdown_table, summarise


def source_only_scores(results: dict) -> dict[int, float]:
    return {run["seed"]: run["mIoU"] for run in results["runs"] if run["method"] == "source-only"}


def keep_replaced(base: dict, methods: list[str], folder: Path, classes: list[str], split: str) -> None:
    """The replaced runs, beside the table's source-only runs, as a table of their own in `folder`."""
    if (folder / "results.json").exists():
        raise SystemExit(f"{folder} already holds a table; name a new folder for the replaced runs")
    runs = [run for run in base["runs"] if run["method"] in {"source-only", *methods}]
    summary = summarise(runs, classes)
    commits = "; ".join(sorted({run.get("commit", base["commit"]) for run in runs}))
    write_json(
        folder / "results.json", {"benchmark": base["benchmark"], "commit": commits, "runs": runs, "summary": summary}
    )
    write_text(folder / "results.md", markdown_table(base["benchmark"], commits, summary, classes, split))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("destination", type=Path, help="results/<benchmark> folder (results.json is rewritten)")
    parser.add_argument("addition", type=Path, help="the bench folder whose runs are added")
    parser.add_argument("--methods", required=True, help="comma-separated methods to take from the addition")
    parser.add_argument("--check-source-only", action="store_true")
    parser.add_argument(
        "--replace-into", type=Path, metavar="FOLDER",
        help="replace the table's runs of these methods, keeping the replaced runs as a table in FOLDER",
    )  # fmt: skip
    args = parser.parse_args()
    base = json.loads((args.destination / "results.json").read_text())
    added = json.loads((args.addition / "results.json").read_text())
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    present = {run["method"] for run in base["runs"]}
    clash = sorted(set(methods) & present)
    if clash and args.replace_into is None:
        raise SystemExit(f"already in {args.destination}: {', '.join(clash)} (--replace-into FOLDER replaces them)")
    if missing := sorted(set(methods) - {run["method"] for run in added["runs"]}):
        raise SystemExit(f"not in {args.addition}: {', '.join(missing)}")
    if args.check_source_only:
        old, new = source_only_scores(base), source_only_scores(added)
        differ = {s: (old.get(s), v) for s, v in new.items() if abs(old.get(s, -1e9) - v) > 0.01}
        if differ or not new:
            raise SystemExit(f"source-only differs (seed: table, new bench): {differ or 'no source-only runs'}")
    classes = list(base["runs"][0]["per_class"])
    split = base["runs"][0]["config"]["eval"]["split"]
    merged = base.get("merged", [{"commit": base["commit"], "methods": sorted(present)}])
    entry = {"commit": added["commit"], "methods": methods, "source_only_checked": args.check_source_only}
    if clash:
        keep_replaced(base, clash, args.replace_into, classes, split)
        merged = [{**e, "methods": [m for m in e["methods"] if m not in clash]} for e in merged]
        entry["replaced"] = {"methods": clash, "kept_in": str(args.replace_into)}
    runs = [run for run in base["runs"] if run["method"] not in clash]
    runs += [run for run in added["runs"] if run["method"] in methods]
    merged = [*(e for e in merged if e["methods"]), entry]
    summary = summarise(runs, classes)
    commits = "; ".join(f"{entry['commit']} ({', '.join(entry['methods'])})" for entry in merged)
    write_json(args.destination / "results.json", {**base, "runs": runs, "summary": summary, "merged": merged})
    write_text(args.destination / "results.md", markdown_table(base["benchmark"], commits, summary, classes, split))
    print(markdown_table(base["benchmark"], commits, summary, classes, split))


if __name__ == "__main__":
    main()
