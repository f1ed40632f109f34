"""Collapse watch: whether a run's predictions have degenerated into one class or into certainty everywhere.

A diverging run stops on non-finite numbers (loop.py); a collapsing one stays finite and would otherwise end
quietly with a useless model (TENT at a huge learning rate: the entropy reads 0 from the second step on). The
watch reads the logits of the model's forward passes during training, through a forward hook, so every method is
covered without its own code. A step counts as collapsed when, in its last forward pass,

- one class takes at least `largest_share` of the batch's pixels (argmax at the feature resolution), or
- the mean entropy, divided by log K, is at most `entropy_floor` (every pixel certain, whatever its class);

and the run is collapsed when its last `window` steps all were (the window is capped at half the run, so a short
run can be judged too). The count of consecutive collapsed steps lives on the device (no synchronisation per
step) and in the checkpoint (a resumed run goes on counting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

STREAK_KEY = "health.collapsed_steps"


@dataclass(frozen=True)
class CollapseRule:
    largest_share: float = 0.99  # one class on >= 99 % of a batch's pixels
    # Normalised entropy: trained models keep some doubt at object borders (the toy source model's mean is
    # ~0.1); a value of 1e-3 means every pixel's top class holds > 99.99 % of the probability.
    entropy_floor: float = 1e-3
    window: int = 10  # consecutive collapsed steps that make the run collapsed

    def steps_needed(self, iterations: int) -> int:
        return max(1, min(self.window, iterations // 2))


def batch_health(logits: Tensor) -> tuple[Tensor, Tensor]:
    """(largest class share, mean entropy / log K) of a [B,K,h,w] prediction, as 0-d float32 tensors."""
    logits = logits.detach().float()
    classes = logits.shape[1]
    # scatter_add rather than bincount: bincount asks the host for the output size (a sync on CUDA)
    counts = torch.zeros(classes, device=logits.device).scatter_add_(
        0, logits.argmax(dim=1).flatten(), torch.ones(logits[:, 0].numel(), device=logits.device)
    )
    share = counts.max() / counts.sum().clamp(min=1)
    log_p = logits.log_softmax(dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1).mean() / math.log(max(classes, 2))
    return share, entropy


class CollapseWatch:
    """Hooked on a model for the length of a run: `end_step()` after each step, `state()` for the numbers."""

    def __init__(self, model: nn.Module, rule: CollapseRule | None = None):
        self.rule = rule or CollapseRule()
        device = next(model.parameters()).device
        self.streak = torch.zeros((), dtype=torch.long, device=device)
        self.share: Tensor | None = None
        self.entropy: Tensor | None = None
        self._last: Tensor | None = None
        self._handle = model.register_forward_hook(self._record)

    def _record(self, module: nn.Module, inputs: Any, output: Any) -> None:
        logits = getattr(output, "logits", None)
        if isinstance(logits, Tensor) and logits.dim() == 4:
            self._last = logits.detach()  # the step's last forward pass counts (no graph kept alive)

    def end_step(self) -> None:
        if self._last is None:
            return
        self.share, self.entropy = batch_health(self._last)
        self._last = None
        collapsed = (self.share >= self.rule.largest_share) | (self.entropy <= self.rule.entropy_floor)
        self.streak = (self.streak + 1) * collapsed.long()

    def collapsed(self, iterations: int) -> bool:
        return int(self.streak) >= self.rule.steps_needed(iterations)

    def numbers(self) -> dict[str, float]:
        """The last step's figures, for a log line (the one place they leave the device)."""
        if self.share is None or self.entropy is None:
            return {}
        return {"largest_class_share": float(self.share), "entropy_norm": float(self.entropy)}

    def extra_state(self) -> dict[str, Tensor]:
        return {STREAK_KEY: self.streak.detach().cpu().reshape(1)}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        if STREAK_KEY in state:
            self.streak = state[STREAK_KEY].reshape(()).to(self.streak.device, torch.long)

    def warning(self, label: str) -> str:
        numbers = self.numbers()
        return (
            f"{label}: predictions collapsed for the last {int(self.streak)} steps (largest class "
            f"{numbers.get('largest_class_share', math.nan):.1%} of the pixels, normalised entropy "
            f"{numbers.get('entropy_norm', math.nan):.4f}); the model is likely useless: lower the learning rate "
            "or the number of steps"
        )

    def close(self) -> None:
        self._handle.remove()
