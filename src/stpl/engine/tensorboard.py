"""TensorBoard event files of a run (`--set log.tensorboard=true`): RUN/tensorboard/, one TensorBoard run per folder.

Written at the loop's log steps only, where the numbers leave the device anyway (no synchronisation per step):
- the log line's values, by section: loss/ (each `loss_*` term and the total), train/lr, method/ (what the method
  returns besides its losses: pseudo-label share, teacher confidence, ...), collapse/ (engine/health.py's figures);
- norm/: how far the normalisation layers' running statistics moved from those the run started with (kept in the
  checkpoint, so a resumed run measures from the same start);
- at the end of a run, a few frames of its last batch with the predicted classes coloured.
An evaluation with an output folder (`stpl eval --out DIR`, each run of `stpl bench`) adds eval/mIoU, eval_iou/<class>
and a few evaluation frames (prediction beside labels) to DIR/tensorboard/, at the scored checkpoint's step.

Only rank 0 writes. Disabled, every call does nothing and torch.utils.tensorboard is never imported.

Resuming: the resumed run writes a new event file in the same folder that starts with TensorBoard's restart marker
(SummaryWriter's purge_step) at the first step after the checkpoint. TensorBoard's Python loader (EventAccumulator,
`tensorboard --load_fast=false`) then drops what the interrupted run logged after its last checkpoint; those steps
are run and logged again, as in metrics.jsonl. A reader that ignores the marker shows those few steps twice.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from stpl.data.pairs import PairBatch, PairDataset, denormalize
from stpl.data.palettes import palette_for
from stpl.errors import StplError
from stpl.models.segmenter import upsample

EVENTS_DIR = "tensorboard"  # inside a run folder: `tensorboard --logdir RUN_OR_BENCH_DIR`
INSTALL_COMMAND = "pip install 'stpl[tensorboard]' (in a checkout: make setup)"
REFERENCE_KEY = "tensorboard.norm_start."  # extra-state prefix of the running statistics the run started with
OVERLAY_FRAMES = 3  # a handful: enough to see what the model does, small in the event file
NOT_LOGGED = ("step", "seconds")  # the event's own step and wall time say these
COLLAPSE_KEYS = ("largest_class_share", "entropy_norm", "collapsed")
BN_EPS = 1e-5  # BatchNorm's default: keeps a channel of zero variance from dividing by zero


def tensorboard_installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def require_tensorboard(enabled: bool) -> None:
    """One line before any work when log.tensorboard=true cannot be honoured: the package is missing, or is there
    but does not import (a broken install fails here, not at the first log step)."""
    if not enabled:
        return
    if not tensorboard_installed():
        raise StplError(
            f"log.tensorboard=true needs the tensorboard package, which is not installed: {INSTALL_COMMAND}"
        )
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (only whether it imports)
    except Exception as err:  # any failure of a broken install gets the same message
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StplError(
            f"log.tensorboard=true: the tensorboard package is installed but does not import "
            f"({type(err).__name__}: {first_line}); reinstall it ({INSTALL_COMMAND}) or drop log.tensorboard"
        ) from None


def require_writable(folder: Path) -> None:
    """One line naming `folder` when TensorBoard's event files cannot be written there (its writer thread would
    otherwise fail with a long traceback of its own)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        cause = err.strerror or err
        raise StplError(f"{folder}: TensorBoard's event files cannot be written there ({cause})") from None


def scalar_tag(key: str) -> str:
    """The section a log-line value is shown under: loss/, train/, collapse/ or method/."""
    if key == "loss":
        return "loss/total"
    if key.startswith("loss_"):
        return f"loss/{key.removeprefix('loss_')}"
    if key in ("lr", "lr_factor"):
        return f"train/{key}"
    if key in COLLAPSE_KEYS:
        return f"collapse/{key}"
    return f"method/{key}"


def safe_tag(name: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", name)


# ----------------------------------------------------------------------------------------------------------
# Normalisation drift


def norm_statistics(model: nn.Module) -> dict[str, Tensor]:
    """A copy on the CPU of every normalisation layer's running mean and variance, by buffer name (by name, so
    that any layer keeping torch's names counts, synchronised BN included)."""
    buffers = dict(model.named_buffers())
    prefixes = [name.removesuffix(".running_mean") for name in buffers if name.endswith(".running_mean")]
    return {
        f"{prefix}.{stat}": buffers[f"{prefix}.{stat}"].detach().to("cpu", copy=True)
        for prefix in prefixes
        if f"{prefix}.running_var" in buffers
        for stat in ("running_mean", "running_var")
    }


@torch.no_grad()
def norm_drift(model: nn.Module, start: Mapping[str, Tensor]) -> dict[str, float]:
    """Mean over every normalisation channel of |μ - μ₀| / σ₀ (the mean's shift in starting standard deviations)
    and of |σ² - σ₀²| / σ₀² (the variance's relative change); {} for a model without such layers."""
    if not start:
        return {}
    buffers = dict(model.named_buffers())
    prefixes = [name.removesuffix(".running_mean") for name in start if name.endswith(".running_mean")]
    mean0 = torch.cat([start[f"{p}.running_mean"].flatten() for p in prefixes]).double()
    var0 = torch.cat([start[f"{p}.running_var"].flatten() for p in prefixes]).double() + BN_EPS
    mean = torch.cat([buffers[f"{p}.running_mean"].detach().flatten().cpu() for p in prefixes]).double()
    var = torch.cat([buffers[f"{p}.running_var"].detach().flatten().cpu() for p in prefixes]).double() + BN_EPS
    return {
        "norm/running_mean_shift": float(((mean - mean0).abs() / var0.sqrt()).mean()),
        "norm/running_var_change": float(((var - var0).abs() / var0).mean()),
    }


# ----------------------------------------------------------------------------------------------------------
# Overlays


def colour_overlay(images: Tensor, classes: Tensor, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> Tensor:
    """Frames [B,3,H,W] (ImageNet-normalised) blended with the colours of class maps [B,H,W] -> uint8 [B,H,W,3];
    pixels of no known class (ignored labels) keep the frame."""
    frames = denormalize(images.detach().float().cpu()).permute(0, 2, 3, 1)
    colours = torch.tensor(palette, dtype=torch.float32)
    known = (classes >= 0) & (classes < len(colours))
    painted = colours[classes.clamp(0, len(colours) - 1).cpu()]
    blended = torch.where(known.cpu()[..., None], (1 - alpha) * frames + alpha * painted, frames)
    return blended.round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def predicted_classes(model: nn.Module, batch: PairBatch) -> Tensor:
    """The model's classes [B,H,W] at the image size, in eval mode (stored statistics: no BN update), the model's
    mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        logits = model(batch.current, batch.previous, batch.flow).logits
    finally:
        model.train(was_training)
    return upsample(logits.float(), batch.current.shape[-2:]).argmax(dim=1)


def first_pairs(batch: PairBatch, count: int) -> PairBatch:
    label = None if batch.label is None else batch.label[:count]
    return PairBatch(batch.current[:count], batch.previous[:count], batch.flow[:count], label, batch.index[:count])


def palette_of(meta: Mapping[str, Any], num_classes: int) -> list[tuple[int, int, int]]:
    """The run's palette, else the generated colours of its classes."""
    if meta.get("palette"):
        return [tuple(colour) for colour in meta["palette"]]
    return palette_for(meta.get("class_names") or [str(index) for index in range(num_classes)])


# ----------------------------------------------------------------------------------------------------------


class RunBoard:
    """The event writer of one folder; a no-op unless `enabled`. The writer opens on the first value written, so
    a run that writes nothing (already finished) leaves no file."""

    def __init__(self, folder: Path, enabled: bool, model: nn.Module | None = None):
        self.folder = Path(folder) / EVENTS_DIR
        self.enabled = enabled
        self.model = model
        self.purge_step: int | None = None
        self._writer: Any = None
        self.norm_start = norm_statistics(model) if enabled and model is not None else {}

    # -- state across a resume ------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Tensor]:
        return {f"{REFERENCE_KEY}{name}": value for name, value in self.norm_start.items()}

    def resume(self, state: Mapping[str, Tensor], step: int) -> None:
        """After a checkpoint of `step` was loaded: the run's starting statistics (or, from a checkpoint written
        without TensorBoard, the resumed model's) and the restart marker for the steps logged after it."""
        if not self.enabled:
            return
        start = {
            key.removeprefix(REFERENCE_KEY): value for key, value in state.items() if key.startswith(REFERENCE_KEY)
        }
        self.norm_start = start or (norm_statistics(self.model) if self.model is not None else {})
        self.purge_step = step + 1  # the checkpoint's own step was logged before it was written, and is kept

    # -- writing --------------------------------------------------------------------------------------------
    def writer(self) -> Any:
        if self._writer is None:
            require_tensorboard(True)
            require_writable(Path(self.folder))
            from torch.utils.tensorboard import SummaryWriter  # only here: the package is an optional extra

            self._writer = SummaryWriter(log_dir=str(self.folder), purge_step=self.purge_step)
        return self._writer

    def log_step(self, step: int, logged: Mapping[str, Any]) -> None:
        """A log line's values (the numbers metrics.jsonl holds) and the normalisation drift, at `step`."""
        if not self.enabled:
            return
        writer = self.writer()
        for key, value in logged.items():
            if key not in NOT_LOGGED and value is not None:
                writer.add_scalar(scalar_tag(key), float(value), step)
        if self.model is not None:
            for tag, value in norm_drift(self.model, self.norm_start).items():
                writer.add_scalar(tag, value, step)
        writer.flush()  # a killed run keeps what it logged, as metrics.jsonl does

    def end_of_run(self, step: int, batch: PairBatch, meta: Mapping[str, Any]) -> None:
        """A few frames of the run's last batch with the final model's classes coloured."""
        if not self.enabled or self.model is None:
            return
        batch = first_pairs(batch, OVERLAY_FRAMES)
        classes = predicted_classes(self.model, batch)
        palette = palette_of(meta, int(classes.max()) + 1)
        self.add_images("overlay/last_batch", colour_overlay(batch.current, classes, palette), step)

    def add_images(self, tag: str, images: Tensor, step: int) -> None:
        """uint8 [B,H,W,3] pictures, each under its own tag (TensorBoard's image slider is per tag and step)."""
        for index, image in enumerate(images):
            self.writer().add_image(f"{tag}/{index}", image.numpy(), step, dataformats="HWC")
        self.writer().flush()

    def log_evaluation(
        self, result: Mapping[str, Any], step: int, model: nn.Module, dataset: PairDataset, palette: Sequence
    ) -> None:
        """An evaluation's mIoU and per-class IoU, and a few evaluation frames: prediction beside labels."""
        if not self.enabled:
            return
        writer = self.writer()
        writer.add_scalar("eval/mIoU", float(result["mIoU"]), step)
        for name, value in result["per_class"].items():
            if value is not None:
                writer.add_scalar(f"eval_iou/{safe_tag(name)}", float(value), step)
        chosen = np.linspace(0, len(dataset) - 1, min(OVERLAY_FRAMES, len(dataset))).round().astype(int)
        batch = dataset.batch(sorted(set(chosen.tolist()))).to(next(model.parameters()).device)
        predicted = colour_overlay(batch.current, predicted_classes(model, batch), palette)
        if batch.label is not None:
            label = batch.label.long()
            if label.shape[-2:] != batch.current.shape[-2:]:  # labels scored at another size: shown at the image's
                label = nn.functional.interpolate(label[:, None].float(), batch.current.shape[-2:], mode="nearest")
                label = label[:, 0].long()
            predicted = torch.cat([predicted, colour_overlay(batch.current, label, palette)], dim=2)
        self.add_images("overlay/eval_prediction_and_labels", predicted, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def log_evaluation(
    folder: Path | None,
    enabled: bool,
    result: Mapping[str, Any],
    step: int,
    model: nn.Module,
    dataset: PairDataset,
    palette: Sequence,
) -> None:
    """An evaluation's scores and overlays into folder/tensorboard/ (nothing without a folder or when disabled)."""
    if folder is None or not enabled:
        return
    board = RunBoard(folder, enabled)
    try:
        board.log_evaluation(result, step, model, dataset, palette)
    finally:
        board.close()
