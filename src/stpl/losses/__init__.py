"""Losses: the pixel-level contrastive loss and its sampler, the prediction entropy (entropy.py), class weights
(cross-entropy comes from torch)."""

from stpl.losses.pixel_contrast import pixel_contrastive_loss, sample_per_class

__all__ = ["pixel_contrastive_loss", "sample_per_class"]
