"""Class weights for the supervised cross-entropy from the training labels' class frequencies.

Median-frequency balancing (Eigen & Fergus, 2015): freq(c) = pixels of class c / pixels of the images in which c
appears, weight(c) = median over classes of freq / freq(c). Raised to `power` (0.5 = its square root, a milder
balance that keeps frequent classes from being neglected). Classes absent from the labels get weight 1.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def median_frequency_weights(labels: np.ndarray, num_classes: int, power: float = 0.5) -> Tensor:
    """labels: [N,H,W] integer class ids, anything >= num_classes ignored -> [num_classes] float32 weights."""
    class_pixels = np.zeros(num_classes, dtype=np.float64)
    image_pixels = np.zeros(num_classes, dtype=np.float64)  # labelled pixels of the images holding the class
    for label in labels:
        counts = np.bincount(label[label < num_classes].ravel(), minlength=num_classes)[:num_classes]
        class_pixels += counts
        image_pixels[counts > 0] += counts.sum()
    present = class_pixels > 0
    weights = np.ones(num_classes, dtype=np.float64)
    if present.any():
        frequency = class_pixels[present] / image_pixels[present]
        weights[present] = (np.median(frequency) / frequency) ** power
    return torch.tensor(weights, dtype=torch.float32)
