"""The README's summary table, regenerated from the committed bench results (results/<benchmark>/results.json).

    python scripts/results_table.py            # prints the markdown table
    python scripts/results_table.py --readme   # replaces the table between the README's markers

Columns: source-only, AdaBN, the best other source-free method, STPL, STPL's no-temporal control, the best
domain-adaptation method that trains with the source data (uda-*: not source-free, a baseline for what giving up
the source costs), the oracle (fine-tuned from the source model on target labels; a reference). Means over seeds;
n = seeds per row.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("synthetic", "synthetic-temporal", "camvid-dusk", "camvid-15hz-night", "camvid-15hz-adverse")
NOT_COMPETITORS = {"source-only", "adabn", "stpl", "stpl-notemporal", "oracle", "oracle-scratch"}
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"


def cell(summary: dict, method: str) -> str:
    row = summary.get(method)
    return "–" if row is None or row["mIoU_mean"] is None else f"{row['mIoU_mean']:.1f}"


def best_of(rows: dict) -> str:
    best = max(rows, key=lambda m: rows[m]["mIoU_mean"], default=None)
    return "–" if best is None else f"{best} {rows[best]['mIoU_mean']:.1f}"


def table_row(benchmark: str, summary: dict) -> str:
    competitors = {m: r for m, r in summary.items() if m not in NOT_COMPETITORS and not m.startswith("stpl-")}
    source_free = {m: r for m, r in competitors.items() if not r.get("uses_source")}
    with_source = {m: r for m, r in competitors.items() if r.get("uses_source")}
    seeds = sorted({row["n"] for row in summary.values()})
    cells = [cell(summary, "source-only"), cell(summary, "adabn"), best_of(source_free), cell(summary, "stpl"),
             cell(summary, "stpl-notemporal"), best_of(with_source), cell(summary, "oracle")]  # fmt: skip
    return f"| {benchmark} | {'/'.join(map(str, seeds))} | " + " | ".join(cells) + " |"


def build_table(results_dir: Path) -> str:
    lines = [
        "| benchmark | n | source-only | AdaBN | best other source-free | STPL | STPL without time "
        "| best with source data (UDA) | oracle |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    found = {path.parent.name: path for path in results_dir.glob("*/results.json")}
    for name in [*ORDER, *sorted(set(found) - set(ORDER))]:
        summary = json.loads(found[name].read_text()).get("summary", {}) if name in found else {}  # speed: none
        if "source-only" in summary:  # a bench of a few methods only (e.g. the online ones) has its own doc table
            lines.append(table_row(name, summary))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--readme", action="store_true", help="rewrite the table in README.md in place")
    args = parser.parse_args()
    table = build_table(args.results)
    if not args.readme:
        print(table)
        return
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks the markers {START} ... {END}")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    readme.write_text(pattern.sub(lambda _: f"{START}\n{table}\n{END}", text))


if __name__ == "__main__":
    main()
