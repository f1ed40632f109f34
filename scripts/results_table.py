"""The README's summary table, regenerated from the committed bench results (results/<benchmark>/results.json).

    python scripts/results_table.py            # prints the markdown table
    python scripts/results_table.py --readme   # replaces the table between the README's markers

Columns: source-only, AdaBN, the best other source-free method, STPL, STPL's no-temporal control, the best
domain-adaptation method that trains with the source data (uda-*: not source-free, a baseline for what giving up
the source costs), the oracle (fine-tuned from the source model on target labels; a reference). Means over seeds;
n = seeds per row.

A second table, between its own markers, gives the online rows (adapted while predicting, `*-online`): for every
benchmark with an online bench, source-only, each stream baseline and stpl-online; a variant table of a benchmark
(its name and a suffix: `camvid-15hz-continual-frame-statistics-baselines`) follows that benchmark's row.
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
ONLINE_START, ONLINE_END = "<!-- online-table:start -->", "<!-- online-table:end -->"
ONLINE_ORDER = ("norm-online", "tent-online", "cotta-online", "self-training-online", "stpl-online")


def is_online(method: str) -> bool:
    return method.endswith("-online")


def cell(summary: dict, method: str) -> str:
    row = summary.get(method)
    return "–" if row is None or row["mIoU_mean"] is None else f"{row['mIoU_mean']:.1f}"


def best_of(rows: dict) -> str:
    best = max(rows, key=lambda m: rows[m]["mIoU_mean"], default=None)
    return "–" if best is None else f"{best} {rows[best]['mIoU_mean']:.1f}"


def table_row(benchmark: str, summary: dict) -> str:
    competitors = {
        m: r for m, r in summary.items() if m not in NOT_COMPETITORS and not m.startswith("stpl-") and not is_online(m)
    }
    source_free = {m: r for m, r in competitors.items() if not r.get("uses_source")}
    with_source = {m: r for m, r in competitors.items() if r.get("uses_source")}
    seeds = sorted({row["n"] for row in summary.values()})
    cells = [cell(summary, "source-only"), cell(summary, "adabn"), best_of(source_free), cell(summary, "stpl"),
             cell(summary, "stpl-notemporal"), best_of(with_source), cell(summary, "oracle")]  # fmt: skip
    return f"| {benchmark} | {'/'.join(map(str, seeds))} | " + " | ".join(cells) + " |"


def summaries(results_dir: Path) -> dict[str, dict]:
    """Each benchmark's summary, in the README's order (benchmarks without a source-only row left out)."""
    found = {path.parent.name: path for path in results_dir.glob("*/results.json")}
    out = {}
    for name in [*ORDER, *sorted(set(found) - set(ORDER))]:
        summary = json.loads(found[name].read_text()).get("summary", {}) if name in found else {}  # speed: none
        if "source-only" in summary:
            out[name] = summary
    return out


def beside_their_benchmark(names: list[str]) -> list[str]:
    """`names` with each variant table (a benchmark's name and a suffix, e.g. the baselines run with other
    settings) moved to just after its benchmark's row."""
    ordered = [name for name in names if not any(name.startswith(f"{other}-") for other in names)]
    for name in [name for name in names if name not in ordered]:
        base = max((other for other in ordered if name.startswith(f"{other}-")), key=len)
        position = ordered.index(base) + 1
        while position < len(ordered) and ordered[position].startswith(f"{base}-"):
            position += 1
        ordered.insert(position, name)
    return ordered


def build_online_table(results_dir: Path) -> str:
    header = "| benchmark | n | source-only | " + " | ".join(ONLINE_ORDER) + " |"
    lines = [header, "|---" * (3 + len(ONLINE_ORDER)) + "|"]
    tables = summaries(results_dir)
    for name in beside_their_benchmark(list(tables)):
        summary = tables[name]
        if any(is_online(m) for m in summary):
            seeds = sorted({row["n"] for m, row in summary.items() if is_online(m) or m == "source-only"})
            cells = [cell(summary, m) for m in ("source-only", *ONLINE_ORDER)]
            lines.append(f"| {name} | {'/'.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_table(results_dir: Path) -> str:
    lines = [
        "| benchmark | n | source-only | AdaBN | best other source-free | STPL | STPL without time "
        "| best with source data (UDA) | oracle |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, summary in summaries(results_dir).items():
        if not all(is_online(m) for m in summary if m != "source-only"):  # online-only benches: the other table
            lines.append(table_row(name, summary))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--readme", action="store_true", help="rewrite the table in README.md in place")
    args = parser.parse_args()
    tables = {(START, END): build_table(args.results), (ONLINE_START, ONLINE_END): build_online_table(args.results)}
    if not args.readme:
        print("\n\n".join(tables.values()))
        return
    readme = ROOT / "README.md"
    text = readme.read_text()
    for (start, end), table in tables.items():
        if start not in text or end not in text:
            raise SystemExit(f"README.md lacks the markers {start} ... {end}")
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
        text = pattern.sub(lambda _, s=start, e=end, tb=table: f"{s}\n{tb}\n{e}", text)
    readme.write_text(text)


if __name__ == "__main__":
    main()
