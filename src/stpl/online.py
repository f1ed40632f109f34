"""Online (test-time) adaptation of a video model while it predicts: frames arrive in order, and frame t is
predicted after a few update steps of an adaptation method on a window of pairs that end at frame t, so nothing
after frame t is ever used. Episodic mode resets the weights to the starting model before each update.

Works on any ordered `PairDataset` (the evaluation split in `stpl bench --methods stpl-online,tent-online`) and on
frames streamed from a folder or video (`stpl predict --adapt online`).
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from stpl.adapt import build_method, uses_source
from stpl.adapt.cotta import stochastic_restore
from stpl.adapt.frame_statistics import frame_share, has_batch_norm, use_frame_statistics
from stpl.adapt.norm import batch_norms
from stpl.analysis.label_free import StreamScores
from stpl.config import AdaptConfig, Config, with_overrides
from stpl.data.pairs import PairBatch, PairDataset
from stpl.engine.frame_health import HealthLog, frame_health
from stpl.engine.loop import LoopSettings, build_optimizer, train_step
from stpl.engine.precision import Precision
from stpl.errors import StplError
from stpl.models import VideoSegmenter
from stpl.models.segmenter import SegmenterOutput


def causal_settings(config: AdaptConfig) -> AdaptConfig:
    """The adapt settings as an online run can honour them, nothing after frame t being known: statistics that
    would be re-estimated over the whole split follow the stream instead (norm=update), the teacher has no later
    frame to look at, and thresholds fixed over the whole split (class_median) are refused."""
    if config.method == "adabn":
        raise StplError("online adaptation needs a trained method (adabn has no steps)")
    if uses_source(config.method):
        raise StplError(f"{config.method} trains on labelled source data; online adaptation has the stream alone")
    if config.confidence == "class_median":
        raise StplError("adapt.confidence=class_median needs the whole split before adapting; online, use another")
    norm = "update" if config.norm == "reestimate" else config.norm
    return dataclasses.replace(config, norm=norm, teacher_later=False)


# Settings that carry a method over from offline adaptation to a stream, chosen on held-out streams (frames or
# shifts that no benchmark scores; docs/online.md): what they replace, and the factor on the learning rate.
# Online STPL's pseudo-labels average the teacher's prediction of frame t with its warped prediction of frame t-1:
# one update per frame at twice the offline rate, on labels the earlier frame confirms; the model and its teacher
# predict each frame with that frame's own batch-norm statistics (online.frame_statistics 1: no lag after a change).
STREAM_RECIPES: dict[str, dict[str, Any]] = {
    "stpl": {"temporal_ensemble": True, "lr_factor": 2.0, "online": {"frame_statistics": 1.0}},
}


def stream_recipe(config: Config) -> Config:
    """`config` with its method's stream recipe applied (adapt.online.recipe "stream"); once, where an online run
    starts, so that the recorded config is what ran."""
    recipe = STREAM_RECIPES.get(config.adapt.method)
    if config.adapt.online.recipe != "stream" or recipe is None:
        return config
    settings = {key: value for key, value in recipe.items() if key != "lr_factor"}
    settings["lr"] = config.adapt.lr * recipe.get("lr_factor", 1.0)
    # applied: the adapt.* settings now stand as they are
    settings["online"] = {**recipe.get("online", {}), "recipe": "offline"}
    return with_overrides(config, {"adapt": settings})


class OnlineAdapter:
    """A model that adapts as it goes: `update(batch)` runs the method's steps on a window, `predict(batch)` the
    fused video prediction in eval mode. The method and its teacher are those of `stpl adapt` (adapt.* settings);
    the learning rate is constant (no schedule: there is no end of the stream to decay towards). The settings are
    those `causal_settings` leaves."""

    def __init__(self, model: VideoSegmenter, config: AdaptConfig, seed: int = 0):
        config = causal_settings(config)
        self.model = model
        self.config = config
        self.options = config.online
        self.seed = seed
        self.precision = Precision(config.amp, next(model.parameters()).device)
        if self.options.norm_momentum > 0:
            for norm in batch_norms(model):
                norm.momentum = self.options.norm_momentum
        # before _build: teachers are copies of the model and keep its layers' rule
        if use_frame_statistics(model, self.options.frame_statistics) == 0 and self.options.frame_statistics > 0:
            print("[online] adapt.online.frame_statistics has no effect: the model has no BatchNorm2d layer (frozen "
                  "batch norm, as in resnet101_deeplabv2, keeps its stored statistics)", file=sys.stderr)  # fmt: skip
        self.start = copy.deepcopy(model.state_dict())  # for episodic updates, restores and resets after a collapse
        # the starting model itself, predicting beside the adapted one, for the label-free guard
        self.guard = None
        if self.options.guard:
            options = self.options
            choose = options.guard_normalisation == "choose"
            self.guard = EstimateGuard(
                model, options.guard_window, options.guard_margin, options.frame_statistics, choose
            )
        self.generator = torch.Generator().manual_seed(seed)  # the restore's draws
        self._build()
        self.steps_done = 0
        self.health = HealthLog()  # the predictions' label-free signals, frame by frame
        self.resets: list[int] = []  # the frames (0-based, in prediction order) after which it went back to the start
        self.falls = 0  # windows in a row, while adapting, that the guard found below a starting copy
        self.hold_until = 0  # the guard's pause: no update before this frame
        self.holds: list[int] = []  # the frames after which a pause began

    def _build(self) -> None:
        """The method (with its teacher and any state of its own) and the optimiser, from the current weights."""
        self.method = build_method(self.model, self.config, self.seed)
        self.optimizer = build_optimizer(self._loop_settings(), self.method.param_groups())
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"]

    def _loop_settings(self) -> LoopSettings:
        c = self.config
        return LoopSettings(iterations=1, momentum=c.momentum, weight_decay=c.weight_decay, log_every=1,
                            checkpoint_every=1, label="online", amp=c.amp)  # fmt: skip

    def reset(self) -> None:
        """Back to the starting weights, with a fresh method (teacher, state) and optimiser."""
        self.model.load_state_dict(self.start)
        self._build()

    def observe(self, output: SegmenterOutput, has_earlier: bool, batch: PairBatch | None = None) -> None:
        """Record a prediction's health signals; with adapt.online.reset_on_collapse, reset when they show a
        collapse (the watch starts afresh, so the reset model has frames to prove itself); with adapt.online.guard,
        reset when the guard finds the model's estimate below the starting model's (`batch`: the pair predicted)."""
        adapted = not self.holding()  # this frame was predicted after updates (not in a pause)
        self.health.add(frame_health(output, has_earlier))
        if self.options.reset_on_collapse and self.health.collapsing():
            self.resets.append(len(self.health.frames) - 1)
            self.health.streak = 0
            self.reset()
        elif self.guard is not None and batch is not None:
            judged = len(self.guard.checks)
            share = self.guard.observe(batch, output, has_earlier, frame_share(self.model))
            if len(self.guard.checks) > judged and adapted:  # a window that ends on an adapted frame was judged
                self.falls = self.falls + 1 if share is not None else 0
            if share is not None:
                frame = len(self.health.frames) - 1
                self.resets.append(frame)
                use_frame_statistics(self.model, share)  # before the reset: the new teacher copies the model's rule
                self.reset()
                if self.falls >= 2 and self.options.guard_hold > 0:  # adapting keeps failing here: pause it
                    self.hold_until, self.falls = frame + 1 + self.options.guard_hold, 0
                    self.holds.append(frame)
                    self.guard.checks[-1]["hold"] = True

    def holding(self) -> bool:
        """Whether the guard has paused adapting for the next frame (frames before `hold_until` take no update)."""
        return len(self.health.frames) < self.hold_until

    def update(self, batch: PairBatch) -> dict[str, float]:
        if self.holding():
            return {}
        if self.options.episodic:  # every window starts from the starting model, teacher, optimiser
            self.reset()
        values: dict[str, torch.Tensor] = {}
        for _ in range(self.options.steps):
            values, _ = train_step(self.method, self.optimizer, batch, self.steps_done, "online", None, self.precision)
            stochastic_restore(self.model, self.start, self.options.restore_probability, self.generator)
            self.steps_done += 1
        if self.options.norm_source_prior > 0:
            pull_statistics_towards(self.model, self.start, self.options.norm_source_prior)
        return {key: float(value.detach()) for key, value in values.items()}

    @torch.no_grad()
    def predict(self, batch: PairBatch) -> SegmenterOutput:
        self.model.eval()
        return self.model(batch.current, batch.previous, batch.flow)


class EstimateGuard:
    """Goes back to the start when adapting does not pay, and chooses the normalisation as it does. Frozen copies of
    the starting model predict every frame beside the adapted one: with the stored batch-norm statistics (the
    model as the user has it) and, when the model has batch norm, with `frame_statistics` of each frame's own
    (adapt/frame_statistics.py; 1 when the run uses none). After each window of frames the temporal estimates over
    it (analysis/label_free.StreamScores: consistency along the flow as a class-mean IoU over the stored-statistics
    copy's classes, times the share of them a model keeps) are compared: the adapted model below the better
    starting copy by more than `margin` points goes back to the starting weights with that copy's normalisation.
    Every check is kept in `checks` (for predict.json and the bench record)."""

    def __init__(
        self, model: VideoSegmenter, window: int, margin: float, frame_statistics: float = 0.0, choose: bool = True
    ):
        stored = copy.deepcopy(model).eval()
        for parameter in stored.parameters():
            parameter.requires_grad_(False)
        use_frame_statistics(stored, 0.0)
        self.starts: dict[float, VideoSegmenter] = {0.0: stored}  # share of frame statistics -> starting copy
        if has_batch_norm(model):
            framed = copy.deepcopy(stored)
            share = frame_statistics if frame_statistics > 0 else 1.0
            use_frame_statistics(framed, share)
            self.starts[share] = framed
        self.window, self.margin = window, margin
        self.choose = choose  # False: only the copy that normalises as the model does is a way back
        self.num_classes = model.num_classes
        self.frames = 0
        self.checks: list[dict[str, Any]] = []
        self._new_window()

    def _new_window(self) -> None:
        # the adapted model against the stored-statistics copy (whose estimate comes with it), and each other
        # starting copy against the same copy's classes
        self.scores = {share: StreamScores(self.num_classes) for share in self.starts}
        self.frames = 0

    @torch.no_grad()
    def observe(self, batch: PairBatch, output: SegmenterOutput, has_earlier: bool, share: float) -> float | None:
        """Add one predicted frame of a model normalising with `share` of each frame's statistics. At the end of a
        window where it fell below a starting copy: the share of that copy, to go back with; otherwise None."""
        predictions = {key: start(batch.current, batch.previous, batch.flow) for key, start in self.starts.items()}
        stored = predictions[0.0]
        for key, scores in self.scores.items():
            scores.add(output if key == 0.0 else predictions[key], stored, has_earlier)
        self.frames += 1
        if self.frames < self.window:
            return None
        adapted = self.scores[0.0].result()
        starts = {0.0: adapted["reference_estimate"]}
        starts.update({key: self.scores[key].result()["estimate"] for key in self.starts if key != 0.0})
        self._new_window()
        # the better starting copy; on a tie the one normalising as the model does
        ways_back = starts if self.choose or share not in starts else {share: starts[share]}
        best = max(ways_back, key=lambda key: (ways_back[key], key == share))
        fell = adapted["estimate"] < starts[best] - self.margin
        self.checks.append({"adapted": adapted["estimate"], "start": starts.get(share),
                            "start_stored_statistics": starts[0.0],
                            "start_frame_statistics": next((v for k, v in starts.items() if k != 0.0), None),
                            "reset": fell, "frame_statistics": best if fell else share})  # fmt: skip
        return best if fell else None


@torch.no_grad()
def pull_statistics_towards(model: torch.nn.Module, start: dict[str, torch.Tensor], share: float) -> None:
    """Move every batch-norm layer's stored mean and variance `share` of the way to their values in `start`."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            module.running_mean.lerp_(start[f"{name}.running_mean"].to(module.running_mean), share)
            module.running_var.lerp_(start[f"{name}.running_var"].to(module.running_var), share)


class UpdatePacer:
    """Which frames drive an update while predicting a stream: every `every`-th, and with a frame-rate target `fps`,
    of those only the ones whose update fits the time a camera delivering `fps` frames a second leaves. Frame i is
    due by (i + 1) / fps after the first frame; an update is taken when the time so far, plus an update's cost and
    a frame's (running means of what they took), stays within that. The first allowed frame always updates (to
    learn the cost). Every frame is predicted either way; `updated` and `skipped` say what happened."""

    def __init__(self, every: int, fps: float = 0.0, clock: Callable[[], float] = time.perf_counter):
        self.every, self.fps, self.clock = every, fps, clock
        self.started: float | None = None
        self.update_seconds: float | None = None  # the mean cost of one update
        self.frame_seconds = 0.0  # the mean cost of one frame besides its update (reading, flow, predicting, writing)
        self.updated: list[int] = []  # the frames (0-based) an update was taken before
        self.skipped = 0  # the frames `every` allowed an update before whose update did not fit
        self._frame_started: float | None = None
        self._last_update: float | None = None  # what the update before the current frame took
        self._frames = 0

    def before_frame(self, index: int) -> bool:
        """Called as frame `index` arrives; whether to update before predicting it."""
        now = self.clock()
        if self.started is None:
            self.started = now
        if self._frame_started is not None:  # the previous frame's cost, its update left out
            spent = now - self._frame_started - (self._last_update or 0.0)
            self._frames += 1
            self.frame_seconds += (spent - self.frame_seconds) / self._frames
        self._frame_started, self._last_update = now, None
        if index % self.every:
            return False
        if self.fps > 0 and self.update_seconds is not None:
            due = (index + 1) / self.fps
            if now - self.started + self.update_seconds + self.frame_seconds > due:
                self.skipped += 1
                return False
        return True

    def updated_for(self, index: int, seconds: float) -> None:
        """An update before frame `index` took `seconds`."""
        self.updated.append(index)
        self._last_update = seconds
        count = len(self.updated)
        previous = self.update_seconds or 0.0
        self.update_seconds = previous + (seconds - previous) / count

    def summary(self, frames: int) -> dict[str, Any]:
        """What predict.json records: the target, the updates taken and skipped, and the interval they came to."""
        return {"fps_target": self.fps or None, "updates": len(self.updated), "skipped_updates": self.skipped,
                "update_interval": frames / len(self.updated) if self.updated else None,
                "update_seconds": self.update_seconds, "frame_seconds": self.frame_seconds}  # fmt: skip


def update_window(index: int, window: int, replay: int, seed: int) -> list[int]:
    """The pairs an update before pair `index` trains on: the last `window` up to `index`, and `replay` of the
    earlier ones drawn without replacement (as many as there are), the same for the same (seed, index)."""
    first = max(0, index - window + 1)
    recent = list(range(first, index + 1))
    if replay <= 0 or first == 0:
        return recent
    draw = np.random.default_rng([seed, index]).choice(first, size=min(replay, first), replace=False)
    return sorted(int(i) for i in draw) + recent


def online_pass(
    adapter: OnlineAdapter,
    dataset: PairDataset,
    device: torch.device,
    on_update: Callable[[int, dict[str, float]], None] | None = None,
) -> Iterator[tuple[int, PairBatch, SegmenterOutput]]:
    """The pairs of `dataset` in order: before predicting pair i (every `every`-th), update on the pairs
    max(0, i - window + 1) .. i, with `replay` earlier ones. Yields (i, its batch, the prediction)."""
    options = adapter.options
    for index in range(len(dataset)):
        if index % options.every == 0:
            window = update_window(index, options.window, options.replay, adapter.seed)
            values = adapter.update(dataset.batch(window).to(device))
            if on_update is not None:
                on_update(index, values)
        batch = dataset.batch([index]).to(device)
        output = adapter.predict(batch)
        adapter.observe(output, int(dataset.pairs[index, 0]) != int(dataset.pairs[index, 1]), batch)
        yield index, batch, output
