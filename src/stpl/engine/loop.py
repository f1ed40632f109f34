"""The one training loop: batch, step, backward, optimiser, schedule, method hook, log, checkpoint.

A run folder holds `config.yaml`, `metrics.jsonl` (one line per logged step) and `checkpoint_last.safetensors`.
Starting a run in a folder whose last checkpoint is unfinished resumes it; a finished one is returned as is.
Checkpoints are written every `checkpoint_every` steps, whenever `checkpoint_seconds` have passed since the last
one, and when Ctrl-C or SIGTERM asks the run to stop (engine/interrupt.py): an interruption loses at most the step
in progress. The collapse watch (engine/health.py) judges whether the predictions degenerated. With
`tensorboard` set, the log steps also go to RUN/tensorboard/ (engine/tensorboard.py).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stpl.atomic import write_text
from stpl.data.loader import batches_in_order
from stpl.data.pairs import PairBatch, RandomBatches, SourceAndTarget
from stpl.engine import distributed
from stpl.engine.checkpoint import load_checkpoint, save_checkpoint
from stpl.engine.health import CollapseWatch
from stpl.engine.interrupt import StopRequests, signal_name
from stpl.engine.method import Method
from stpl.engine.precision import Precision
from stpl.engine.run_files import LAST_CHECKPOINT, METRICS_FILE, SNAPSHOT_DIR
from stpl.engine.tensorboard import RunBoard
from stpl.errors import Interrupted, StplError
from stpl.progress import Progress

RNG_KEY = "rng.torch"
CUDA_RNG_KEY = "rng.cuda"


@dataclass(kw_only=True)
class LoopSettings:
    iterations: int
    momentum: float
    weight_decay: float
    log_every: int
    checkpoint_every: int
    label: str  # shown in progress lines, e.g. "source" or "adapt"
    snapshot_every: int = 0  # keep the weights of every N-th step in snapshots/ (0 = never)
    optimizer: str = "sgd"  # "sgd" (with momentum) or "adamw" (momentum is then Adam's beta1)
    warmup_steps: int = 0  # linear warm-up from lr/warmup_steps to lr before the poly decay takes over
    amp: str = "off"  # mixed precision of the step: off, bf16 or fp16 (engine/precision.py)
    loader_workers: int = 0  # processes preparing batches ahead (data/loader.py; 0 = in this process)
    checkpoint_seconds: float = 0.0  # also checkpoint when this long has passed since the last one (0 = never)
    tensorboard: bool = False  # also write the log steps as TensorBoard events (log.tensorboard)


@dataclass
class LoopResult:
    logged: dict[str, float]  # the last logged values ({} for a run that was already finished)
    collapsed: bool  # the predictions degenerated over the run's last steps (engine/health.py)


def poly_factor(step: int, iterations: int, power: float = 0.9) -> float:
    return max(0.0, 1.0 - step / max(iterations, 1)) ** power


def lr_factor(step: int, iterations: int, warmup_steps: int = 0) -> float:
    """Multiplier of every group's initial lr at `step`: linear warm-up (at most half the run), then poly(0.9)
    over the whole run."""
    warmup_steps = min(warmup_steps, iterations // 2)
    if step < warmup_steps:
        return (step + 1) / warmup_steps * poly_factor(warmup_steps, iterations)
    return poly_factor(step, iterations)


def build_optimizer(settings: LoopSettings, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    if settings.optimizer == "adamw":
        betas = (settings.momentum, 0.999)
        return torch.optim.AdamW(groups, lr=0.0, betas=betas, weight_decay=settings.weight_decay)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=settings.momentum, weight_decay=settings.weight_decay)
    raise ValueError(f"unknown optimizer '{settings.optimizer}' (known: sgd, adamw)")


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {RNG_KEY: torch.get_rng_state()}
    if device.type == "cuda":
        state[CUDA_RNG_KEY] = torch.cuda.get_rng_state(device)
    return state


def logged_step(line: str) -> int | None:
    """The step a metrics.jsonl line logs, or None when the line is not one stpl wrote."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def keep_logged_steps_up_to(metrics_path: Path, step: int) -> None:
    """On resuming at `step`: drop the lines logged after it (they are logged again). A damaged last line (a run
    killed while writing it) goes too, with a warning; a damaged line before it stops the resume, file untouched."""
    if not metrics_path.is_file():
        return
    lines = [line for line in metrics_path.read_text().splitlines() if line]
    steps = [logged_step(line) for line in lines]
    if lines and steps[-1] is None:
        print(f"[resume] {metrics_path}: its last line is damaged (a run killed while writing it?); dropped",
              file=sys.stderr)  # fmt: skip
        lines, steps = lines[:-1], steps[:-1]
    damaged = [number for number, value in enumerate(steps, start=1) if value is None]
    if damaged:
        raise StplError(
            f"{metrics_path}: line {damaged[0]} is not a metrics line stpl wrote, so the run cannot resume from it; "
            "repair or delete that line, or start afresh with another --out"
        )
    kept = [line for line, value in zip(lines, steps, strict=True) if value is not None and value <= step]
    write_text(metrics_path, "".join(f"{line}\n" for line in kept))


def finite_or_none(value: torch.Tensor) -> float | None:
    """A logged number for strict JSON: None stands for NaN or infinity."""
    number = float(value.detach())
    return number if math.isfinite(number) else None


def weights_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(value).all()) for value in model.state_dict().values() if value.is_floating_point())


def gradient_norm(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """The 2-norm of every gradient the optimiser will apply (infinite or NaN if any entry is)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


def divergence_message(label: str, step: int, values: dict[str, torch.Tensor], checkpoint: Path | None) -> str:
    """One line: the step, the terms that are not finite, what was kept, what to try."""
    bad = [f"{key}={float(value.detach())}" for key, value in values.items() if not bool(torch.isfinite(value).all())]
    kept = "no checkpoint was written yet"
    if checkpoint is not None and checkpoint.is_file():
        kept = f"the last checkpoint {checkpoint} is kept"
    return (
        f"{label} diverged at step {step}: {', '.join(bad) or 'loss'} is not finite; stopped, {kept} "
        "(lower the learning rate, or check that the labels hold known class ids)"
    )


def interrupted(settings: LoopSettings, done: int, number: int | None, checkpoint: Path) -> Interrupted:
    """The stop a signal asked for, once step `done` is checkpointed (exit status 128 + the signal's number)."""
    number = number or signal.SIGINT
    return Interrupted(
        f"{settings.label} stopped by {signal_name(number)} after step {done} of {settings.iterations}; checkpoint "
        f"{checkpoint} written: run the same command again to resume",
        128 + number,
    )


def train_step(
    method: Method,
    optimizer: torch.optim.Optimizer,
    batch: PairBatch,
    step: int,
    label: str = "train",
    checkpoint: Path | None = None,
    precision: Precision | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One step: the method's named values (keys "loss_*" summed), backward, the optimiser, the method's after-step
    hook (teacher update). A non-finite loss or gradient raises StplError before anything is applied (`label` and
    `checkpoint`, the run's last checkpoint, go into its message). `precision`: mixed precision (engine/precision.py);
    with fp16 an overflowing step is skipped by the gradient scaler instead. Returns the values and the summed loss."""
    precision = precision or Precision()
    method.train_mode()
    with precision.autocast():
        values = method.step(distributed.shard(batch), step)  # this process's share (all of it alone)
    losses = [value.float() for key, value in values.items() if key.startswith("loss_")]
    if not losses:  # a step that trains nothing (e.g. statistics that follow the stream): only the hook runs
        distributed.average_buffers(method.model)
        method.after_step()
        return values, torch.zeros(())
    total = torch.stack(losses).sum()
    if not distributed.all_finite(total):  # a diverged run must not be saved, scored or reported
        raise StplError(divergence_message(label, step + 1, values, checkpoint))
    optimizer.zero_grad(set_to_none=True)
    precision.backward(total)
    distributed.average_gradients(optimizer)
    precision.unscale(optimizer)
    if precision.scaler is None and not distributed.all_finite(gradient_norm(optimizer)):
        raise StplError(divergence_message(label, step + 1, {"gradients": torch.tensor(math.nan)}, checkpoint))
    precision.step(optimizer)
    distributed.average_buffers(method.model)
    method.after_step()
    return values, total


def run_loop(
    method: Method,
    batches: RandomBatches | SourceAndTarget,
    settings: LoopSettings,
    run_dir: Path,
    meta: dict[str, Any],
) -> LoopResult:
    """Train `method.model` for settings.iterations steps; returns the last logged values and the collapse verdict."""
    device = next(method.model.parameters()).device
    optimizer = build_optimizer(settings, method.param_groups())
    precision = Precision(settings.amp, device)
    watch = CollapseWatch(method.model)
    board = RunBoard(run_dir, settings.tensorboard and distributed.is_main(), method.model)  # a no-op when off
    checkpoint_path = run_dir / LAST_CHECKPOINT
    start = 0
    if checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path)
        method.model.load_state_dict(state.model)
        method.load_extra_state(state.extra)
        precision.load_state(state.extra)
        watch.load_extra_state(state.extra)
        board.resume(state.extra, state.step)
        if RNG_KEY in state.extra:
            torch.set_rng_state(state.extra[RNG_KEY])  # dropout and sampling continue as if never stopped
        if CUDA_RNG_KEY in state.extra and device.type == "cuda":
            torch.cuda.set_rng_state(state.extra[CUDA_RNG_KEY], device)
        if state.optimizer is not None:
            optimizer.load_state_dict(state.optimizer)
        start = state.step
        if start >= settings.iterations:
            print(f"[{settings.label}] already finished ({start} steps) in {run_dir}", flush=True)
            watch.close()
            return LoopResult({}, watch.collapsed(settings.iterations))
        print(f"[{settings.label}] resuming from step {start} in {run_dir}", flush=True)

    main = distributed.is_main()  # with several processes, rank 0 alone writes logs and checkpoints
    last_save = time.monotonic()

    def save(step: int) -> None:
        nonlocal last_save
        if not weights_finite(method.model):  # the checkpoint on disk stays the last good one
            raise StplError(
                divergence_message(settings.label, step, {"weights": torch.tensor(math.nan)}, checkpoint_path)
            )
        last_save = time.monotonic()
        if not main:
            return
        save_checkpoint(
            checkpoint_path,
            method.model.state_dict(),
            {**meta, "step": step, "iterations": settings.iterations},
            optimizer.state_dict(),
            {
                **method.extra_state(),
                **rng_state(device),
                **precision.state(),
                **watch.extra_state(),
                **board.extra_state(),
            },
        )

    progress = Progress(settings.label, settings.iterations, every_seconds=10.0, initial=start)
    metrics_path = run_dir / METRICS_FILE
    if main:
        keep_logged_steps_up_to(metrics_path, start)  # steps after the last checkpoint are run (and logged) again
    metrics_file = (metrics_path if main else Path(os.devnull)).open("a")
    logged: dict[str, float] = {}
    started = time.perf_counter()  # of this (possibly resumed) session
    stream = batches_in_order(
        batches, start, settings.iterations, settings.loader_workers, pin_memory=device.type == "cuda"
    )
    try:
        with StopRequests() as stop:
            for step, prepared in zip(range(start, settings.iterations), stream, strict=True):
                # Phase 1: schedule and data.
                factor = lr_factor(step, settings.iterations, settings.warmup_steps)
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] * factor
                batch = prepared.to(device)
                # Phases 2 and 3: the method's losses, optimise, the method's hook.
                values, total = train_step(method, optimizer, batch, step, settings.label, checkpoint_path, precision)
                watch.end_step()
                # Phase 4: log (the only place numbers leave the device) and checkpoint.
                done = step + 1
                if done % settings.log_every == 0 or done == settings.iterations:
                    numbers = {key: finite_or_none(value) for key, value in {**values, "loss": total}.items()}
                    seconds = time.perf_counter() - started
                    # the schedule's factor beside the rate: readable at a glance where a chart shows 1e-4 as 0.0
                    logged = {"step": done, "lr": optimizer.param_groups[0]["lr"], "lr_factor": factor,
                              "seconds": seconds, **numbers}  # fmt: skip
                    logged |= watch.numbers()
                    if done == settings.iterations:  # the verdict goes into the log's last line
                        logged["collapsed"] = watch.collapsed(settings.iterations)
                    metrics_file.write(json.dumps(logged, allow_nan=False) + "\n")
                    metrics_file.flush()
                    board.log_step(done, logged)
                    if done == settings.iterations:  # the final model on a few frames of its last batch
                        board.end_of_run(done, batch, meta)
                    shown = " ".join(
                        f"{k}={v:.3f}" for k, v in numbers.items() if k.startswith("loss") and v is not None
                    )
                    if main:
                        progress.update(done, shown, force=True)
                elif main:  # between log steps, a rate and ETA line at most every 10 s (slow first steps)
                    progress.update(done)
                overdue = (
                    settings.checkpoint_seconds > 0 and time.monotonic() - last_save >= settings.checkpoint_seconds
                )
                stopping, overdue = distributed.any_rank([stop.received is not None, overdue])
                if done % settings.checkpoint_every == 0 or done == settings.iterations or overdue or stopping:
                    save(done)
                if main and settings.snapshot_every > 0 and done % settings.snapshot_every == 0:
                    snapshot = run_dir / SNAPSHOT_DIR / f"step{done:06d}.safetensors"
                    save_checkpoint(snapshot, method.model.state_dict(), {**meta, "step": done})
                if stopping:
                    raise interrupted(settings, done, stop.received, checkpoint_path)
            if distributed.any_rank([stop.received is not None])[0]:  # asked during the last step's save
                raise interrupted(settings, settings.iterations, stop.received, checkpoint_path)
    finally:
        metrics_file.close()
        stream.close()  # stops the loader's worker processes at once, whatever ended the loop
        watch.close()
        board.close()
    collapsed = watch.collapsed(settings.iterations)
    if collapsed and main:
        print(f"stpl: warning: {watch.warning(settings.label)}", file=sys.stderr, flush=True)
    return LoopResult(logged, collapsed)
