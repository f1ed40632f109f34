"""Datasets as in-memory frame-pair splits: "source" (labelled source video), "adapt" (unlabelled target video
for adaptation), "eval" (labelled target video for evaluation). `build_dataset` is the one entry point."""

from __future__ import annotations

from collections.abc import Callable

from stpl.config import Config
from stpl.data.pairs import IGNORE_INDEX, PairBatch, PairDataset, RandomBatches
from stpl.errors import StplError

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "SPLITS",
    "PairBatch",
    "PairDataset",
    "RandomBatches",
    "build_dataset",
    "dataset_classes",
]

SPLITS = ("source", "adapt", "eval")


def _synthetic(config: Config, split: str, with_labels: bool) -> PairDataset:
    from stpl.data.synthetic import build_synthetic  # the generator is only imported when asked for

    return build_synthetic(config, split, with_labels)


def _synthetic_classes(config: Config) -> tuple[str, ...]:
    from stpl.data.synthetic_scene import SYNTHETIC_CLASSES

    return SYNTHETIC_CLASSES


def _camvid(config: Config, split: str, with_labels: bool) -> PairDataset:
    from stpl.data.camvid import build_camvid

    return build_camvid(config, split, with_labels)


def _camvid_classes(config: Config) -> tuple[str, ...]:
    from stpl.data.camvid import CAMVID_CLASSES

    return CAMVID_CLASSES


# name -> (split builder, class names)
DATASETS: dict[str, tuple[Callable[[Config, str, bool], PairDataset], Callable[[Config], tuple[str, ...]]]] = {
    "synthetic": (_synthetic, _synthetic_classes),
    "camvid": (_camvid, _camvid_classes),
}


def _lookup(name: str):
    if name not in DATASETS:
        raise StplError(f"unknown dataset '{name}' in data.dataset (known: {', '.join(DATASETS)})")
    return DATASETS[name]


def dataset_classes(config: Config) -> tuple[str, ...]:
    return _lookup(config.data.dataset)[1](config)


def build_dataset(config: Config, split: str, with_labels: bool) -> PairDataset:
    """Adaptation code asks for split "adapt" with with_labels=False: it never sees labels or source data."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
    return _lookup(config.data.dataset)[0](config, split, with_labels)
