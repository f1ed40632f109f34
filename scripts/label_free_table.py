"""How far the label-free estimate can be trusted: the estimate against the true mIoU of every bench run that
carries one (key `estimate` in each run of DIR/<bench>/results.json), written to results/label-free/.

    python scripts/label_free_table.py                 # the committed benches under results/label-free/<bench>/
    python scripts/label_free_table.py --results DIR   # bench folders elsewhere (a bench still running: its records)

Per benchmark: Spearman's rank correlation between the estimate (computed on the unlabelled adaptation frames) and
the evaluation mIoU over all runs but the references (the oracles saw the adaptation labels), the same for each
part, and for the held-out labelled adaptation frames' mIoU (what the estimate's settings may be chosen on). Over
all benchmarks: for every (source-only, adapted) pair of the same seed whose true mIoU differs by at least
`--margin` points, whether the estimate orders the two the same way.

The estimate is recomputed from each run's stored agreement counts with the package's current formula
(analysis/label_free.py), so that a change of formula needs no new bench run; the parts that are not read off the
counts (confidence, entropy, SND) are taken as stored.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ("oracle", "oracle-scratch")
PARTS = ("temporal_estimate", "temporal_miou", "augmentation_miou", "class_identity", "source_miou", "class_coverage",
         "confidence", "entropy", "snd", "temporal_pixels", "augmentation_pixels")  # fmt: skip


def ranks(values: list[float]) -> list[float]:
    """Ranks from 1, ties given their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(first: list[float], second: list[float]) -> float | None:
    """Pearson's correlation of the ranks; None for fewer than 3 pairs or a constant series."""
    if len(first) < 3:
        return None
    a, b = ranks(first), ranks(second)
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    covariance = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    spread = math.sqrt(sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b))
    return covariance / spread if spread > 0 else None


def scored_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs with an estimate, the references left out, with the estimate recomputed from their counts. A
    stream bench (online runs, each with the source model's estimate on the same stream) scores source-only by
    that estimate, so that every run of the table is scored on the same frames."""
    from stpl.analysis.label_free import count_parts, estimate_from_parts, temporal_estimate

    runs, stream_sources, sources = [], {}, []
    for run in results["runs"]:
        estimate = run.get("estimate")
        if run["method"] == "source-only":
            sources.append(run)
        if not estimate or run["method"] in REFERENCES:
            continue
        if estimate.get("kind") == "temporal":  # an online run: the stream as predicted
            parts, value = estimate["parts"], estimate["estimate"]
            stream_sources[run["seed"]] = estimate["reference_estimate"]
        else:
            parts = {**estimate["parts"], **count_parts(estimate["counts"])}
            parts["temporal_estimate"] = temporal_estimate(parts)
            value = estimate_from_parts(parts)
        online = run["method"].endswith("-online")
        runs.append({"method": run["method"], "seed": run["seed"], "mIoU": run["mIoU"], "online": online,
                     "adapt_split_mIoU": run.get("adapt_split_mIoU"), "estimate": value, "parts": parts,
                     "auto_choice": run.get("auto_choice"),
                     "guard_checks": (run.get("health") or {}).get("guard_checks")})  # fmt: skip
    if stream_sources:  # every run on the stream: source-only by the source model's estimate on the same frames
        runs = [run for run in runs if run["online"]]
        runs += [{"method": "source-only", "seed": run["seed"], "mIoU": run["mIoU"], "online": False,
                  "adapt_split_mIoU": None, "estimate": stream_sources[run["seed"]], "parts": {}, "auto_choice": None,
                  "guard_checks": None}
                 for run in sources if run["seed"] in stream_sources]  # fmt: skip
    return runs


# the safe choices: offline, auto (selection.py) picks among candidate runs; online, auto-online is stpl-online
# under the guard. Each is a copy of, or a variant of, another run of its table, so it is left out of the Spearman.
AUTO_METHODS = ("auto", "auto-online")


def auto_rows(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The auto row against source-only (per seed) and against the best single method's mean."""
    autos = [run for run in runs if run["method"] in AUTO_METHODS]
    if not autos:
        return None
    means: dict[str, list[float]] = {}
    for run in runs:
        means.setdefault(run["method"], []).append(run["mIoU"])
    sources = {run["seed"]: run["mIoU"] for run in runs if run["method"] == "source-only"}
    singles = {method: sum(v) / len(v) for method, v in means.items() if method not in AUTO_METHODS}
    best = max(singles, key=lambda method: singles[method])
    auto_mean = sum(run["mIoU"] for run in autos) / len(autos)
    below = [run["seed"] for run in autos if run["mIoU"] < sources.get(run["seed"], -1.0)]
    chosen = {str(run["seed"]): run["auto_choice"]["chosen"] for run in autos if run["auto_choice"]}
    return {"method": autos[0]["method"], "mean": auto_mean, "seeds": len(autos), "best_single": best,
            "best_single_mean": singles[best], "below_source_seeds": below, "chosen": chosen}  # fmt: skip


def final_share(run: dict[str, Any]) -> float | None:
    """The share of frame statistics a guarded run ended with (None before its first check)."""
    return run["guard_checks"][-1].get("frame_statistics") if run["guard_checks"] else None


def guard_rows(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method run under the online guard: mean mIoU, source-only's on the same seeds, the seeds that ended
    below source-only, the resets and the normalisation each run ended with (share of frame statistics)."""
    sources = {run["seed"]: run["mIoU"] for run in runs if run["method"] == "source-only"}
    rows: dict[str, Any] = {}
    for method in dict.fromkeys(run["method"] for run in runs if run.get("guard_checks") is not None):
        chosen = [run for run in runs if run["method"] == method and run["seed"] in sources]
        if not chosen:
            continue
        rows[method] = {
            "seeds": len(chosen),
            "mIoU": sum(run["mIoU"] for run in chosen) / len(chosen),
            "source_only": sum(sources[run["seed"]] for run in chosen) / len(chosen),
            "below_source_seeds": [run["seed"] for run in chosen if run["mIoU"] < sources[run["seed"]]],
            "checks": sum(len(run["guard_checks"]) for run in chosen),
            "resets": sum(check["reset"] for run in chosen for check in run["guard_checks"]),
            "final_frame_statistics": [final_share(run) for run in chosen],
        }
    return rows


CANDIDATES = ("adabn", "self-training", "stpl")  # adapt.auto_candidates' default
MARGINS = (0.0, 0.5, 1.0, 1.5, 2.0)


def held_out_choice(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """auto's rule replayed on the held-out labelled adaptation frames, for each candidate formula and margin: per
    seed the chosen candidate's adaptation-frames mIoU, its shortfall from the best candidate's, and whether it
    fell below the source model's (what the formula, candidates and margin are chosen on)."""
    from stpl.selection import SOURCE, choose

    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for run in runs:
        name = SOURCE if run["method"] == "source-only" else run["method"]
        if (
            (name == SOURCE or name in CANDIDATES)
            and run["adapt_split_mIoU"] is not None
            and "augmentation_miou" in run["parts"]
        ):
            by_seed.setdefault(run["seed"], {})[name] = run
    seeds = [seed for seed, named in by_seed.items() if SOURCE in named and len(named) == len(CANDIDATES) + 1]
    if not seeds:
        return None
    result: dict[str, Any] = {}
    for formula_name, formula in formulas().items():
        for margin in MARGINS:
            shortfall, below = [], 0
            for seed in seeds:
                named = by_seed[seed]
                chosen, _ = choose({name: formula(run["parts"]) for name, run in named.items()}, margin)
                truth = {name: run["adapt_split_mIoU"] for name, run in named.items()}
                shortfall.append(max(truth.values()) - truth[chosen])
                below += truth[chosen] < truth[SOURCE]
            mean = sum(shortfall) / len(shortfall)
            result[f"{formula_name}, margin {margin:g}"] = {"mean_shortfall": mean, "below_source": below,
                                                             "seeds": len(seeds)}  # fmt: skip
    return result


def direction_pairs(benchmark: str, runs: list[dict[str, Any]], margin: float) -> list[dict[str, Any]]:
    """(source-only, adapted) pairs of one seed whose mIoU differs by >= margin, and whether the estimate agrees."""
    sources = {run["seed"]: run for run in runs if run["method"] == "source-only"}
    pairs = []
    for run in runs:
        source = sources.get(run["seed"])
        if source is None or run is source or abs(run["mIoU"] - source["mIoU"]) < margin:
            continue
        truth = run["mIoU"] - source["mIoU"]
        said = run["estimate"] - source["estimate"]
        pairs.append({"benchmark": benchmark, "method": run["method"], "seed": run["seed"], "mIoU_difference": truth,
                      "estimate_difference": said, "right": (truth > 0) == (said > 0)})  # fmt: skip
    return pairs


def formulas() -> dict[str, Any]:
    """The estimates the formula was chosen among (docs/label_free.md), as functions of a run's parts."""

    def mean_with_augmentation(parts: dict[str, Any]) -> float:
        return 100 * (parts["temporal_miou"] + parts["augmentation_miou"]) / 2 * parts["class_identity"]

    def temporal(parts: dict[str, Any]) -> float:
        return 100 * parts["temporal_miou"] * parts["class_identity"]

    def augmentation(parts: dict[str, Any]) -> float:
        return 100 * parts["augmentation_miou"] * parts["class_identity"]

    return {"temporal x identity": temporal, "mean(temporal, augmentation) x identity": mean_with_augmentation,
            "augmentation x identity": augmentation}  # fmt: skip


def benchmark_rows(benchmark: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    auto, guard = auto_rows(runs), guard_rows(runs)
    runs = [run for run in runs if run["method"] not in AUTO_METHODS]  # a copy of another run: it would count twice
    truth = [run["mIoU"] for run in runs]
    held_out = [run for run in runs if run["adapt_split_mIoU"] is not None]
    return {
        "runs": len(runs),
        "methods": sorted({run["method"] for run in runs}),
        "auto": auto,
        "guard": guard,
        "auto_held_out": held_out_choice(runs),
        "spearman_estimate": spearman([run["estimate"] for run in runs], truth),
        "spearman_estimate_adapt_split": spearman(
            [run["estimate"] for run in held_out], [run["adapt_split_mIoU"] for run in held_out]
        ),
        # the candidate formulas against the held-out adaptation frames' mIoU: what the formula is chosen on
        "formulas_adapt_split": {
            name: spearman([formula(run["parts"]) for run in held_out], [run["adapt_split_mIoU"] for run in held_out])
            for name, formula in formulas().items()
            if held_out and all("augmentation_miou" in run["parts"] for run in held_out)
        },
        "spearman_parts": {
            part: spearman([float(run["parts"][part]) for run in runs], truth)
            for part in PARTS
            if all(isinstance(run["parts"].get(part), int | float) for run in runs)
        },
    }


def markdown(summary: dict[str, Any], margin: float) -> str:
    def number(value: float | None) -> str:
        return "–" if value is None else f"{value:+.2f}"

    lines = ["# label-free estimate against mIoU", "",
             "Spearman's rank correlation over each benchmark's runs (methods x seeds, references left out): the "
             "estimate on the unlabelled adaptation frames against the evaluation mIoU, and against the labelled "
             "adaptation frames' mIoU (held out from scoring; what the estimate's settings may be chosen on).", "",
             "| benchmark | runs | estimate vs mIoU | estimate vs adaptation-frames mIoU | temporal x identity | "
             "augmentation | confidence | entropy | SND |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in summary["benchmarks"].items():
        parts = row["spearman_parts"]
        lines.append(
            f"| {name} | {row['runs']} | {number(row['spearman_estimate'])} | "
            f"{number(row['spearman_estimate_adapt_split'])} | {number(parts.get('temporal_estimate'))} | "
            f"{number(parts.get('augmentation_miou'))} | {number(parts.get('confidence'))} | "
            f"{number(parts.get('entropy'))} | {number(parts.get('snd'))} |"
        )
    lines += ["", "Choosing the formula: Spearman against the labelled adaptation frames' mIoU (held out from "
              "scoring).", "",
              "| benchmark | " + " | ".join(formulas()) + " |", "|---|" + "---|" * len(formulas())]  # fmt: skip
    for name, row in summary["benchmarks"].items():
        if row["formulas_adapt_split"]:
            cells = " | ".join(number(row["formulas_adapt_split"].get(formula)) for formula in formulas())
            lines.append(f"| {name} | {cells} |")
    for name, row in summary["benchmarks"].items():
        if row["auto"]:
            auto = row["auto"]
            below = auto["below_source_seeds"] or "none"
            lines += ["", f"{auto['method']} on {name} ({auto['seeds']} runs): mean {auto['mean']:.1f} vs the best "
                      "single method "
                      f"({auto['best_single']}) {auto['best_single_mean']:.1f}; seeds below source-only: {below}; "
                      f"chosen per seed: {auto['chosen']}"]  # fmt: skip
    guarded = [(name, method, row) for name, bench in summary["benchmarks"].items()
               for method, row in bench["guard"].items()]  # fmt: skip
    if guarded:
        lines += ["", "Online runs under the label-free guard (adapt.online.guard): mean mIoU against source-only on "
                  "the same seeds, the seeds that ended below it, resets over checks, and the share of frame "
                  "statistics each run ended with.", "",
                  "| benchmark | method | runs | mIoU | source-only | seeds below source-only | resets / checks | "
                  "final frame statistics |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, method, row in guarded:
            below = row["below_source_seeds"] or "none"
            lines.append(f"| {name} | {method} | {row['seeds']} | {row['mIoU']:.1f} | {row['source_only']:.1f} | "
                         f"{below} | {row['resets']} / {row['checks']} | "
                         f"{row['final_frame_statistics']} |")  # fmt: skip
    held_out = {name: row["auto_held_out"] for name, row in summary["benchmarks"].items() if row["auto_held_out"]}
    if held_out:
        lines += ["", "auto's rule replayed on the held-out adaptation frames (candidates source, "
                  f"{', '.join(CANDIDATES)}): mean shortfall from the best candidate's mIoU / seeds below the source "
                  "model.", "", "| formula and margin | " + " | ".join(held_out) + " |",
                  "|---|" + "---|" * len(held_out)]  # fmt: skip
        for key in next(iter(held_out.values())):
            cells = " | ".join(f"{r[key]['mean_shortfall']:.2f} / {r[key]['below_source']} of {r[key]['seeds']}"
                               for r in held_out.values())  # fmt: skip
            lines.append(f"| {key} | {cells} |")
    direction = summary["direction"]
    lines += ["", f"(source-only, adapted) pairs of one seed whose mIoU differs by at least {margin:g}: the estimate "
              f"orders {direction['right']} of {direction['pairs']} right"
              + (f" ({100 * direction['share']:.0f} %)." if direction["pairs"] else "."), ""]  # fmt: skip
    wrong = [pair for pair in summary["pairs"] if not pair["right"]]
    if wrong:
        lines += ["Wrong way round:", "", "| benchmark | method | seed | mIoU - source | estimate - source |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for pair in wrong:
            lines.append(f"| {pair['benchmark']} | {pair['method']} | {pair['seed']} | "
                         f"{pair['mIoU_difference']:+.1f} | {pair['estimate_difference']:+.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def read_results(path: Path) -> dict[str, Any] | None:
    """A bench's results.json, or for a bench still running, its finished runs' record.json files."""
    if path.is_file():
        results = json.loads(path.read_text())
        return results if "runs" in results else None
    records = sorted(path.parent.glob("runs/*/*/record.json"))
    if not records:
        return None
    runs = [json.loads(record.read_text()) for record in records]
    return {"runs": sorted(runs, key=lambda run: run["seed"]), "commit": runs[0].get("commit"), "partial": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "label-free",
                        help="folder of <bench>/results.json")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "label-free")
    parser.add_argument("--margin", type=float, default=1.0, help="mIoU difference that a direction must get right")
    args = parser.parse_args(argv)
    benchmarks, pairs, sources = {}, [], {}
    for path in sorted(folder / "results.json" for folder in args.results.iterdir() if folder.is_dir()):
        results = read_results(path)
        if results is None:
            continue
        runs = scored_runs(results)
        if not runs:
            continue
        benchmarks[path.parent.name] = benchmark_rows(path.parent.name, runs)
        pairs += direction_pairs(path.parent.name, runs, args.margin)
        sources[path.parent.name] = {"file": str(path.relative_to(args.results)), "commit": results.get("commit"),
                                     "partial": results.get("partial", False)}  # fmt: skip
    if not benchmarks:
        print(f"no bench results with an estimate under {args.results}", file=sys.stderr)
        return 1
    right = sum(pair["right"] for pair in pairs)
    direction = {"pairs": len(pairs), "right": right, "share": right / len(pairs) if pairs else None}
    summary = {"benchmarks": benchmarks, "sources": sources, "margin": args.margin, "pairs": pairs,
               "direction": direction}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown(summary, args.margin)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
