"""Datasets as in-memory frame-pair splits: "source" (labelled source video), "adapt" (unlabelled target video
for adaptation), "eval" (labelled target video for evaluation). `build_dataset` is the one entry point.

The source split may come from another data set than the target (data.source_dataset, e.g. viper with
cityscapes_seq); "adapt" and "eval" always come from data.dataset, so adaptation never opens source data."""

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
    "reported_classes",
    "split_dataset_name",
]

SPLITS = ("source", "adapt", "eval")


def _synthetic(config: Config, split: str, with_labels: bool) -> PairDataset:
    from stpl.data.synthetic import build_synthetic  # the generator is only imported when asked for

    if config.flow.method == "files":
        raise StplError("flow.method 'files' is only available for cityscapes_seq, viper and synthia_seq")
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


def _cityscapes_seq(config: Config, split: str, with_labels: bool) -> PairDataset:
    from stpl.data.cityscapes_seq import build_cityscapes_seq

    return build_cityscapes_seq(config, split, with_labels)


def _cityscapes_seq_classes(config: Config) -> tuple[str, ...]:
    from stpl.data.cityscapes_seq import cityscapes_seq_classes

    return cityscapes_seq_classes(config)


def _viper(config: Config, split: str, with_labels: bool) -> PairDataset:
    from stpl.data.viper import build_viper

    return build_viper(config, split, with_labels)


def _viper_classes(config: Config) -> tuple[str, ...]:
    from stpl.data.viper import viper_classes

    return viper_classes(config)


def _synthia_seq(config: Config, split: str, with_labels: bool) -> PairDataset:
    from stpl.data.synthia_seq import build_synthia_seq

    return build_synthia_seq(config, split, with_labels)


def _synthia_seq_classes(config: Config) -> tuple[str, ...]:
    from stpl.data.synthia_seq import synthia_seq_classes

    return synthia_seq_classes(config)


# name -> (split builder, class names)
DATASETS: dict[str, tuple[Callable[[Config, str, bool], PairDataset], Callable[[Config], tuple[str, ...]]]] = {
    "synthetic": (_synthetic, _synthetic_classes),
    "camvid": (_camvid, _camvid_classes),
    "cityscapes_seq": (_cityscapes_seq, _cityscapes_seq_classes),
    "viper": (_viper, _viper_classes),
    "synthia_seq": (_synthia_seq, _synthia_seq_classes),
}


def _lookup(name: str, key: str = "data.dataset"):
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
    classes = _lookup(config.data.dataset)[1](config)
    source = config.data.source_dataset
    if source and source != config.data.dataset:
        source_classes = _lookup(source, "data.source_dataset")[1](config)
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
    return _lookup(name, key)[0](config, split, with_labels)
