"""Mixed precision for a training step: autocast for the forward pass and the losses, and for fp16 a gradient
scaler. Weights, optimiser state and checkpoints stay float32; the methods keep the contrast and the pseudo-labels'
softmax in float32 themselves."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    def __init__(self, mode: str = "off", device: torch.device | str = "cpu"):
        if mode not in ("off", *AMP_DTYPES):
            raise ValueError(f"unknown precision '{mode}' (known: off, {', '.join(AMP_DTYPES)})")
        self.mode = mode
        self.device_type = torch.device(device).type
        # fp16's narrow range needs the loss scaled up and the step skipped on overflow; bf16 does not.
        self.scaler = torch.amp.GradScaler(self.device_type) if mode == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.mode == "off":
            yield
            return
        with torch.autocast(self.device_type, dtype=AMP_DTYPES[self.mode]):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradients back at their true scale (before they are checked or clipped)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)  # skipped when the scaled gradients overflowed
        self.scaler.update()
