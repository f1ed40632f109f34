"""PNG charts for people to look at: grouped bars per class, curves per method. Matplotlib without a screen."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from stpl.atomic import atomic_write


def grouped_bars(
    path: Path, groups: Sequence[str], series: Mapping[str, Sequence[float | None]], ylabel: str, title: str
) -> None:
    """One group of bars per entry of `groups` (e.g. classes), one bar per series (e.g. method); None = no bar."""
    figure, axes = plt.subplots(figsize=(max(6.0, 0.9 * len(groups) * max(1, len(series)) ** 0.5), 4.0))
    width = 0.8 / max(1, len(series))
    for offset, (name, values) in enumerate(series.items()):
        xs = [i + (offset - (len(series) - 1) / 2) * width for i, v in enumerate(values) if v is not None]
        ys = [v for v in values if v is not None]
        axes.bar(xs, ys, width=width, label=name)
    axes.set_xticks(range(len(groups)), groups, rotation=45, ha="right")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(fontsize="small")
    figure.tight_layout()
    atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=120, format="png"))
    plt.close(figure)


def curves(path: Path, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str,
           title: str) -> None:  # fmt: skip
    """One line per series: name -> (xs, ys)."""
    figure, axes = plt.subplots(figsize=(6.0, 4.0))
    for name, (xs, ys) in series.items():
        axes.plot(xs, ys, marker="o", label=name)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(fontsize="small")
    figure.tight_layout()
    atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=120, format="png"))
    plt.close(figure)
