"""Mixed precision for a training step: autocast for the forward pass and the losses, and for fp16 a gradient
scaler. Weights, optimiser state and checkpoints stay float32; the methods keep the contrast and the pseudo-labels'
softmax in float32 themselves."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
SCALE_KEY = "amp.scale"  # checkpoint entries of the fp16 gradient scaler
GROWTH_KEY = "amp.growth_tracker"


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

    def state(self) -> dict[str, torch.Tensor]:
        """The fp16 loss scale and its growth counter, for the checkpoint (a resumed run must not restart at
        65536 and overflow its way back down); empty for off and bf16."""
        saved = self.scaler.state_dict() if self.scaler is not None else {}
        if not saved:
            return {}
        return {
            SCALE_KEY: torch.tensor([saved["scale"]], dtype=torch.float64),
            GROWTH_KEY: torch.tensor([saved["_growth_tracker"]], dtype=torch.int64),
        }

    def load_state(self, extra: dict[str, torch.Tensor]) -> None:
        if self.scaler is None or SCALE_KEY not in extra:
            return
        self.scaler.load_state_dict(
            {
                "scale": float(extra[SCALE_KEY].item()),
                "growth_factor": self.scaler.get_growth_factor(),
                "backoff_factor": self.scaler.get_backoff_factor(),
                "growth_interval": self.scaler.get_growth_interval(),
                "_growth_tracker": int(extra[GROWTH_KEY].item()),
            }
        )
