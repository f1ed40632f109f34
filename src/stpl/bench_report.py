"""`stpl bench`'s report of its runs: means and spreads over seeds per method (results.json's summary), the table
of results.md, and the figures (per-class IoU, and the evaluation mIoU of kept snapshots while adapting)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from stpl import workflows
from stpl.config import build_config
from stpl.engine.run_files import SNAPSHOT_DIR

# trained on target labels: references, never competitors. "oracle" fine-tunes the source model on the target
# adaptation labels (as the field reports it); "oracle-scratch" trains from ImageNet weights on them alone.
REFERENCE_METHODS = ("oracle", "oracle-scratch")


def summarise(runs: list[dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for method in dict.fromkeys(run["method"] for run in runs):
        chosen = [run for run in runs if run["method"] == method]
        values = [run["mIoU"] for run in chosen]
        per_class = {}
        for name in classes:
            class_values = [v for run in chosen if (v := run["per_class"].get(name)) is not None and not math.isnan(v)]
            per_class[name] = mean_std(class_values)
        mean, std = mean_std(values)
        summary[method] = {
            "mIoU_mean": mean,
            "mIoU_std": std,
            "n": len(values),
            "per_class": per_class,
            "reference": method in REFERENCE_METHODS,
            "adapt_seconds_mean": mean_std([run.get("adapt_seconds", 0.0) for run in chosen])[0],
            "collapsed_runs": sum(bool(run.get("collapsed")) for run in chosen),
            "uses_source": any(run.get("uses_source", False) for run in chosen),
        }
        streams = [run["continual"] for run in chosen if run.get("continual")]
        if streams:  # a continual stream: the first and last rounds' means over shifts, over seeds
            summary[method]["continual_first_round"] = mean_std([s["first_round"] for s in streams])
            summary[method]["continual_last_round"] = mean_std([s["last_round"] for s in streams])
        costs = [run["pass_seconds"] / run["eval_frames"] for run in chosen if run.get("pass_seconds")]
        if costs:  # adapting while predicting (online): what each evaluation frame costs, updates included
            summary[method]["seconds_per_frame"] = mean_std(costs)[0]
    return summary


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def markdown_table(benchmark: str, commit: str, summary: dict[str, Any], classes: list[str], split: str) -> str:
    def cell(pair: tuple[float | None, float | None] | list) -> str:
        mean, std = pair
        return "–" if mean is None else f"{mean:.1f} ± {std:.1f}"

    lines = [
        f"# {benchmark}",
        "",
        f"commit `{commit}`; mean ± std over seeds; final model of each run on the target {split} split; "
        "time: seconds per run, data loading included (online methods also: their pass alone, per evaluation frame).",
        "",
        "| method | n | mIoU | time | " + " | ".join(classes) + " |",
        "|---|---|---|---|" + "---|" * len(classes),
    ]
    for method, row in summary.items():
        name = f"{method} (reference)" if row["reference"] else method
        if row.get("uses_source"):  # domain adaptation with the labelled source data: not source-free
            name += " (uses source data)"
        if row.get("collapsed_runs"):  # scored as they are, but a reader must see that they degenerated
            name += f" (collapsed: {row['collapsed_runs']} of {row['n']} runs)"
        mean = cell((row["mIoU_mean"], row["mIoU_std"]))
        time_cell = f"{row.get('adapt_seconds_mean') or 0.0:.0f} s"
        if row.get("seconds_per_frame") is not None:
            time_cell += f" ({row['seconds_per_frame']:.2f} s/frame)"
        lines.append(
            f"| {name} | {row['n']} | {mean} | {time_cell} | "
            + " | ".join(cell(row["per_class"][c]) for c in classes)
            + " |"
        )
    rounds = [(method, row) for method, row in summary.items() if row.get("continual_first_round")]
    if rounds:
        lines += ["", "Continual stream: mean mIoU over shifts of the first and the last round.", "",
                  "| method | first round | last round |", "|---|---|---|"]  # fmt: skip
        for method, row in rounds:
            lines.append(f"| {method} | {cell(row['continual_first_round'])} | {cell(row['continual_last_round'])} |")
    return "\n".join(lines) + "\n"


def adaptation_curves(runs: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Per method, the mean over seeds of the evaluation mIoU of each kept snapshot (adapt.snapshot_every > 0).

    Scored here, after adaptation, for the plot only; the reported number stays the final model's.
    """
    by_method: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        snapshots = sorted((Path(run["checkpoint"]).parent / SNAPSHOT_DIR).glob("step*.safetensors"))
        if run["method"] == "source-only" or run["method"] in REFERENCE_METHODS or not snapshots:
            continue
        config = build_config(base=run["config"])
        for snapshot in snapshots:
            step = int(snapshot.stem.removeprefix("step"))
            score = workflows.evaluate_checkpoint(snapshot, config)["mIoU"]
            by_method.setdefault(run["method"], {}).setdefault(step, []).append(score)
    return {
        method: (sorted(steps), [sum(steps[s]) / len(steps[s]) for s in sorted(steps)])
        for method, steps in by_method.items()
    }


def write_plots(out_dir: Path, benchmark: str, summary: dict[str, Any], classes: list[str], runs: list) -> None:
    """per_class.png (mean IoU per class and method) and, where logged, adaptation_curves.png."""
    from stpl.analysis.plots import curves, grouped_bars

    series = {method: [row["per_class"][c][0] for c in classes] for method, row in summary.items()}
    grouped_bars(out_dir / "per_class.png", classes, series, "IoU (%)", f"{benchmark}: per-class IoU, mean over seeds")
    lines = adaptation_curves(runs)
    if lines:
        title = f"{benchmark}: evaluation mIoU while adapting (plot only, never for model choice)"
        curves(out_dir / "adaptation_curves.png", lines, "adaptation step", "mIoU (%)", title)
