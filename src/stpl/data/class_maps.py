"""Class protocols of the video benchmarks: class names, palette, reported classes and raw id -> train id tables.

Facts (not code) from the peers' public repositories:
- VIPER -> Cityscapes-Seq, 15 classes: Dayan-Guan/DA-VSN `davsn/dataset/CityscapesSeq_list/info_Viper.json`
  (Cityscapes labelIds -> train ids; rider 25 merges into person) and `davsn/dataset/Viper.py` (VIPER class ids ->
  train ids; tree 7 and vegetation 8 both become vegetation; van 25, trailer, train ... are ignored).
- SYNTHIA-Seq -> Cityscapes-Seq, 12 classes trained, 11 reported: `info_SynthiaSeq.json` and
  `davsn/dataset/SynthiaSeq.py` (SYNTHIA-SEQS ids; the SYNTHIA "bicycle"/cyclist id 11 becomes rider, lane marking 12
  is ignored). xing0047/TPS `tps/domain_adaptation/eval_video_UDA.py` builds the full 12-class confusion matrix and
  drops fence from the per-class IoU list before the mean: fence predictions still count as errors of other classes.
  `Protocol.reported` carries that: the mIoU of this protocol is the mean over `reported` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from stpl.constants import IGNORE_INDEX

# Cityscapes colours (RGB) by class name, shared by both protocols.
CITYSCAPES_COLOURS: dict[str, tuple[int, int, int]] = {
    "road": (128, 64, 128), "sidewalk": (244, 35, 232), "building": (70, 70, 70), "fence": (190, 153, 153),
    "pole": (153, 153, 153), "traffic light": (250, 170, 30), "traffic sign": (220, 220, 0),
    "vegetation": (107, 142, 35), "terrain": (152, 251, 152), "sky": (70, 130, 180), "person": (220, 20, 60),
    "rider": (255, 0, 0), "car": (0, 0, 142), "truck": (0, 0, 70), "bus": (0, 60, 100),
    "motorcycle": (0, 0, 230), "bicycle": (119, 11, 32),
}  # fmt: skip

# VIPER class ids (the index of its label PNGs' palette) and palette; van (25) and train (29) share a colour.
VIPER_CLASSES = (
    "unlabeled", "ambiguous", "sky", "road", "sidewalk", "railtrack", "terrain", "tree", "vegetation", "building",
    "infrastructure", "fence", "billboard", "trafficlight", "trafficsign", "mobilebarrier", "firehydrant", "chair",
    "trash", "trashcan", "person", "animal", "bicycle", "motorcycle", "car", "van", "bus", "truck", "trailer", "train",
    "plane", "boat",
)  # fmt: skip
VIPER_PALETTE = (
    (0, 0, 0), (111, 74, 0), (70, 130, 180), (128, 64, 128), (244, 35, 232), (230, 150, 140), (152, 251, 152),
    (87, 182, 35), (35, 142, 35), (70, 70, 70), (153, 153, 153), (190, 153, 153), (150, 20, 20), (250, 170, 30),
    (220, 220, 0), (180, 180, 100), (173, 153, 153), (168, 153, 153), (81, 0, 21), (81, 0, 81), (220, 20, 60),
    (255, 0, 0), (119, 11, 32), (0, 0, 230), (0, 0, 142), (0, 80, 100), (0, 60, 100), (0, 0, 70), (0, 0, 90),
    (0, 80, 100), (0, 100, 100), (50, 0, 90),
)  # fmt: skip
VIPER_CAR = 24  # the ego vehicle is a car component touching the bottom centre; the peers ignore it
VIPER_UNLABELED = 0


@dataclass(frozen=True)
class Protocol:
    name: str
    classes: tuple[str, ...]
    reported: tuple[str, ...]  # classes averaged in the reported mIoU (the confusion matrix keeps all classes)
    raw_to_train: Mapping[str, Mapping[int, int]]  # dataset name -> {raw id: train id}; absent ids are ignored

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return tuple(CITYSCAPES_COLOURS[name] for name in self.classes)

    @property
    def reported_indices(self) -> tuple[int, ...]:
        return tuple(self.classes.index(name) for name in self.reported)

    def lookup(self, dataset: str) -> np.ndarray:
        """uint8 table over every 16-bit raw id: train id, or IGNORE_INDEX for ids outside the protocol."""
        table = np.full(1 << 16, IGNORE_INDEX, dtype=np.uint8)
        for raw, train in self.raw_to_train[dataset].items():
            table[raw] = train
        return table


_VIPER15_CLASSES = (
    "road", "sidewalk", "building", "fence", "traffic light", "traffic sign", "vegetation", "terrain", "sky", "person",
    "car", "truck", "bus", "motorcycle", "bicycle",
)  # fmt: skip
# Cityscapes labelIds; rider (25) merges into person
_CITYSCAPES_TO_VIPER15 = {
    7: 0, 8: 1, 11: 2, 13: 3, 19: 4, 20: 5, 21: 6, 22: 7, 23: 8, 24: 9, 25: 9, 26: 10, 27: 11, 28: 12, 32: 13, 33: 14,
}  # fmt: skip
# VIPER ids (see VIPER_CLASSES); tree and vegetation are both vegetation
_VIPER_TO_VIPER15 = {
    3: 0, 4: 1, 9: 2, 11: 3, 13: 4, 14: 5, 7: 6, 8: 6, 6: 7, 2: 8, 20: 9, 24: 10, 27: 11, 26: 12, 23: 13, 22: 14,
}  # fmt: skip
VIPER15 = Protocol(
    name="viper15",
    classes=_VIPER15_CLASSES,
    reported=_VIPER15_CLASSES,
    raw_to_train={"cityscapes_seq": _CITYSCAPES_TO_VIPER15, "viper": _VIPER_TO_VIPER15},
)

_SYNTHIA12_CLASSES = (
    "road", "sidewalk", "building", "fence", "pole", "traffic light", "traffic sign", "vegetation", "sky", "person",
    "rider", "car",
)  # fmt: skip
_CITYSCAPES_TO_SYNTHIA12 = {7: 0, 8: 1, 11: 2, 13: 3, 17: 4, 19: 5, 20: 6, 21: 7, 23: 8, 24: 9, 25: 10, 26: 11}
# SYNTHIA-SEQS ids: 1 sky, 2 building, 3 road, 4 sidewalk, 5 fence, 6 vegetation, 7 pole, 8 car, 9 traffic sign,
# 10 pedestrian, 11 bicycle (cyclist; the peers train it as rider), 12 lane marking (ignored), 15 traffic light
_SYNTHIA_TO_SYNTHIA12 = {3: 0, 4: 1, 2: 2, 5: 3, 7: 4, 15: 5, 9: 6, 6: 7, 1: 8, 10: 9, 11: 10, 8: 11}
SYNTHIA12 = Protocol(
    name="synthia12",
    classes=_SYNTHIA12_CLASSES,
    # fence is trained but not reported (DA-VSN / TPS: "train on 12 classes and evaluate on 11")
    reported=tuple(name for name in _SYNTHIA12_CLASSES if name != "fence"),
    raw_to_train={"cityscapes_seq": _CITYSCAPES_TO_SYNTHIA12, "synthia_seq": _SYNTHIA_TO_SYNTHIA12},
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (VIPER15, SYNTHIA12)}


def map_to_train_ids(raw: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Raw ids (uint8 or uint16 array) -> uint8 train ids through a `Protocol.lookup` table."""
    return table[raw.astype(np.uint16, copy=False)]
