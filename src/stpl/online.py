"""Online (test-time) adaptation of a video model while it predicts: frames arrive in order, and frame t is
predicted after a few update steps of an adaptation method on a window of pairs that end at frame t, so nothing
after frame t is ever used. Episodic mode resets the weights to the starting model before each update.

Works on any ordered `PairDataset` (the evaluation split in `stpl bench --methods stpl-online,tent-online`) and on
frames streamed from a folder or video (`stpl predict --adapt online`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import numpy as np
import torch

from stpl.adapt import build_method
from stpl.config import AdaptConfig
from stpl.data.pairs import PairBatch, PairDataset
from stpl.engine.loop import LoopSettings, build_optimizer, train_step
from stpl.engine.precision import Precision
from stpl.errors import StplError
from stpl.models import VideoSegmenter
from stpl.models.segmenter import SegmenterOutput


class OnlineAdapter:
    """A model that adapts as it goes: `update(batch)` runs the method's steps on a window, `predict(batch)` the
    fused video prediction in eval mode. The method and its teacher are those of `stpl adapt` (adapt.* settings);
    the learning rate is constant (no schedule: there is no end of the stream to decay towards)."""

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        if config.method == "adabn":
            raise StplError("online adaptation needs a trained method (adabn has no steps)")
        self.model = model
        self.config = config
        self.options = config.online
        self.method = build_method(model, config, seed)
        self.optimizer = build_optimizer(self._loop_settings(), self.method.param_groups())
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self.precision = Precision(config.amp, next(model.parameters()).device)
        self.start = copy.deepcopy(model.state_dict()) if config.online.episodic else None
        self.steps_done = 0

    def _loop_settings(self) -> LoopSettings:
        c = self.config
        return LoopSettings(iterations=1, momentum=c.momentum, weight_decay=c.weight_decay, log_every=1,
                            checkpoint_every=1, label="online", amp=c.amp)  # fmt: skip

    def update(self, batch: PairBatch) -> dict[str, float]:
        if self.start is not None:  # episodic: every window starts from the starting model
            self.model.load_state_dict(self.start)
        values: dict[str, torch.Tensor] = {}
        for _ in range(self.options.steps):
            values, _ = train_step(self.method, self.optimizer, batch, self.steps_done, "online", None, self.precision)
            self.steps_done += 1
        return {key: float(value.detach()) for key, value in values.items()}

    @torch.no_grad()
    def predict(self, batch: PairBatch) -> SegmenterOutput:
        self.model.eval()
        return self.model(batch.current, batch.previous, batch.flow)


def online_pass(
    adapter: OnlineAdapter,
    dataset: PairDataset,
    device: torch.device,
    on_update: Callable[[int, dict[str, float]], None] | None = None,
) -> Iterator[tuple[int, PairBatch, SegmenterOutput]]:
    """The pairs of `dataset` in order: before predicting pair i (every `every`-th), update on the pairs
    max(0, i - window + 1) .. i. Yields (i, its batch, the prediction)."""
    options = adapter.options
    for index in range(len(dataset)):
        if index % options.every == 0:
            window = np.arange(max(0, index - options.window + 1), index + 1).tolist()
            values = adapter.update(dataset.batch(window).to(device))
            if on_update is not None:
                on_update(index, values)
        batch = dataset.batch([index]).to(device)
        yield index, batch, adapter.predict(batch)
