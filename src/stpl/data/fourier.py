"""Fourier-domain image operations of the domain-adaptation baselines (FDA; RDA perturbs the same spectrum).

FDA (Yang & Soatto, CVPR 2020) gives a source image a target image's "style" by replacing the low-frequency band of
its amplitude spectrum with the target's and keeping its own phase (where the content lies):

    F(x) = A(x) exp(i P(x))                       per channel, 2-D FFT
    A' = A(x_s) outside the band, A(x_t) inside   the band: the (2b+1) x (2b+1) square around the zero frequency,
                                                  b = floor(beta * min(H, W)) (FDA uses beta = 0.01 to 0.09)
    x_s->t = real(F^-1(A' exp(i P(x_s))))

With beta = 0 the band is the zero frequency alone: the source image takes the target's mean per channel and keeps
everything else.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def low_frequency_band(height: int, width: int, beta: float, device: torch.device | None = None) -> Tensor:
    """[H,W] bool: the frequencies within b = floor(beta * min(H, W)) of zero on both axes (in unshifted FFT
    order, where the zero frequency sits at [0, 0] and negative frequencies at the end of each axis)."""
    if not 0.0 <= beta < 0.5:
        raise ValueError(f"beta must be in [0, 0.5), got {beta}")
    half = math.floor(beta * min(height, width))

    def near_zero(size: int) -> Tensor:
        index = torch.arange(size, device=device)
        return torch.minimum(index, size - index) <= half  # distance to frequency 0, wrapping around

    return near_zero(height)[:, None] & near_zero(width)[None, :]


def low_frequency_swap(source: Tensor, target: Tensor, beta: float) -> Tensor:
    """`source` [B,C,H,W] with its low-frequency amplitudes replaced by `target`'s (same shape), phase kept."""
    if source.shape != target.shape:
        raise ValueError(f"source {list(source.shape)} and target {list(target.shape)} must have one shape")
    spectrum_source = torch.fft.fft2(source.float())
    amplitude_target = torch.fft.fft2(target.float()).abs()
    band = low_frequency_band(*source.shape[-2:], beta, source.device)
    amplitude = torch.where(band, amplitude_target, spectrum_source.abs())
    swapped = torch.polar(amplitude, spectrum_source.angle())
    return torch.fft.ifft2(swapped).real.to(source.dtype)


def frequency_bands(height: int, width: int, bands: int, device: torch.device | None = None) -> Tensor:
    """[H,W] long: the band of each frequency (unshifted FFT order) among `bands` concentric rectangles, band 0
    around the zero frequency, band bands-1 reaching the highest ones. A frequency's distance to zero along an axis
    of size n, min(i, n - i), is scaled by n / 2; the larger of the two axes' decides."""

    def scaled_distance(size: int) -> Tensor:
        index = torch.arange(size, device=device, dtype=torch.float64)
        return torch.minimum(index, size - index) / (size / 2)

    radius = torch.maximum(scaled_distance(height)[:, None], scaled_distance(width)[None, :])
    return torch.clamp((radius * bands).floor().long(), max=bands - 1)


def swap_band_amplitudes(images: Tensor, reference: Tensor, band_map: Tensor, weights: Tensor) -> Tensor:
    """`images` [B,C,H,W] with each (image, channel, band) component's amplitude moved towards `reference`'s by
    its weight in `weights` [B,C,bands] (0 keeps it, 1 swaps it), phase kept; differentiable in `weights`."""
    spectrum = torch.fft.fft2(images.float())
    amplitude = spectrum.abs()
    gain = weights.gather(-1, band_map.flatten().expand(*weights.shape[:2], -1)).view_as(amplitude)
    moved = amplitude + gain * (torch.fft.fft2(reference.float()).abs() - amplitude)
    return torch.fft.ifft2(torch.polar(moved, spectrum.angle())).real.to(images.dtype)
