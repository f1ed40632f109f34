"""stpl: source-free domain adaptation of video semantic segmentation (STPL, CVPR 2023) and baselines."""

__version__ = "0.1.0"
