"""Colours for class maps: the data sets' own palettes, else well-separated generated ones."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

from stpl.data.camvid import CAMVID_CLASSES, CAMVID_PALETTE
from stpl.data.class_maps import CITYSCAPES_COLOURS


def palette_for(class_names: Sequence[str]) -> list[tuple[int, int, int]]:
    """One RGB triple per class: CamVid's palette for its classes, Cityscapes' colours by class name, else evenly
    spaced hues."""
    if tuple(class_names) == CAMVID_CLASSES:
        return [tuple(colour) for colour in CAMVID_PALETTE]
    colours = []
    for index, name in enumerate(class_names):
        known = CITYSCAPES_COLOURS.get(name.lower())
        if known is None:
            hue = (index * 0.618034) % 1.0  # golden-ratio steps keep neighbours apart
            known = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.9))
        colours.append(tuple(known))
    return colours
