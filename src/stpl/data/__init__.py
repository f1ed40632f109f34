"""Datasets as in-memory frame-pair splits: "source" (labelled source video), "adapt" (unlabelled target video
for adaptation), "eval" (labelled target video for evaluation). `build_dataset` is the one entry point.

The source split may come from another data set than the target (data.source_dataset, e.g. viper with
cityscapes_seq); "adapt" and "eval" always come from data.dataset, so adaptation never opens source data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stpl.config import DATASET_NAMES, Config
from stpl.constants import IGNORE_INDEX
from stpl.data import camvid, cityscapes_seq, frames_dataset, synthetic, synthia_seq, viper
from stpl.data.pairs import PairBatch, PairDataset, RandomBatches
from stpl.data.synthetic_scene import SYNTHETIC_CLASSES
from stpl.errors import StplError

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "SPLITS",
    "DatasetEntry",
    "PairBatch",
    "PairDataset",
    "RandomBatches",
    "build_dataset",
    "dataset_classes",
    "reported_classes",
    "split_dataset_name",
]

SPLITS = ("source", "adapt", "eval")


@dataclass(frozen=True)
class DatasetEntry:
    """A data set: how to build one of its splits, its class names, whether it can read the peers' flow files, and
    whether it has labels at all (one's own video has none: it can be adapted on and predicted, not scored)."""

    build: Callable[[Config, str, bool], PairDataset]
    classes: Callable[[Config], tuple[str, ...]]
    flow_files: bool = True
    labelled: bool = True


# The one list of data sets; config.DATASET_NAMES names them for the schema (checked below).
DATASETS: dict[str, DatasetEntry] = {
    "synthetic": DatasetEntry(synthetic.build_synthetic, lambda config: SYNTHETIC_CLASSES, flow_files=False),
    "camvid": DatasetEntry(camvid.build_camvid, lambda config: camvid.CAMVID_CLASSES, flow_files=False),
    "cityscapes_seq": DatasetEntry(cityscapes_seq.build_cityscapes_seq, cityscapes_seq.cityscapes_seq_classes),
    "viper": DatasetEntry(viper.build_viper, viper.viper_classes),
    "synthia_seq": DatasetEntry(synthia_seq.build_synthia_seq, synthia_seq.synthia_seq_classes),
    "frames": DatasetEntry(
        frames_dataset.build_frames, frames_dataset.frames_classes, flow_files=False, labelled=False
    ),
}
if tuple(DATASETS) != DATASET_NAMES:
    raise ImportError(f"stpl.data.DATASETS {tuple(DATASETS)} and config.DATASET_NAMES {DATASET_NAMES} differ")


def _lookup(name: str, key: str = "data.dataset") -> DatasetEntry:
    if name not in DATASETS:
        raise StplError(f"unknown dataset '{name}' in {key} (known: {', '.join(DATASETS)})")
    return DATASETS[name]


def split_dataset_name(config: Config, split: str) -> str:
    """The data set a split is read from: data.source_dataset (when set) for "source", else data.dataset."""
    if split == "source" and config.data.source_dataset:
        return config.data.source_dataset
    return config.data.dataset


def dataset_classes(config: Config) -> tuple[str, ...]:
    """The target's class names; a separate source data set must share them (checked by name, no data opened)."""
    classes = _lookup(config.data.dataset).classes(config)
    source = config.data.source_dataset
    if source and source != config.data.dataset:
        source_classes = _lookup(source, "data.source_dataset").classes(config)
        if source_classes != classes:
            raise StplError(
                f"data.source_dataset '{source}' has classes {list(source_classes)} but data.dataset "
                f"'{config.data.dataset}' has {list(classes)} (for cityscapes_seq set data.cityscapes_seq.protocol)"
            )
    return classes


def reported_classes(config: Config) -> tuple[str, ...]:
    """Classes averaged in the reported mIoU; the confusion matrix keeps all classes. SYNTHIA-Seq -> Cityscapes-Seq
    trains 12 classes and reports 11 (fence dropped after the 12-class confusion matrix, as in the peers)."""
    from stpl.data.class_maps import PROTOCOLS

    classes = dataset_classes(config)
    if config.data.dataset == "cityscapes_seq":
        return PROTOCOLS[config.data.cityscapes_seq.protocol].reported
    if config.data.dataset in ("viper", "synthia_seq"):
        return next(p.reported for p in PROTOCOLS.values() if p.classes == classes)
    return classes


def build_dataset(config: Config, split: str, with_labels: bool) -> PairDataset:
    """Adaptation code asks for split "adapt" with with_labels=False: it never sees labels or source data."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
    name = split_dataset_name(config, split)
    key = "data.source_dataset" if name != config.data.dataset else "data.dataset"
    entry = _lookup(name, key)
    if config.flow.method == "files" and not entry.flow_files:
        readers = ", ".join(known for known, other in DATASETS.items() if other.flow_files)
        raise StplError(f"flow.method 'files' is only available for {readers}")
    return entry.build(config, split, with_labels)
