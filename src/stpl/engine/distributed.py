"""Data-parallel training over processes (`torchrun --nproc-per-node N -m stpl train-source|adapt ...`).

Each rank takes its share of every global batch (`shard`), gradients are averaged across ranks after backward,
normalisation statistics are averaged after each step (so every rank holds the same model, and an EMA teacher that
follows it stays identical too), and rank 0 alone writes run folders, logs and checkpoints. Without torchrun's
environment nothing here does anything: one process is world size 1.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as distributed_functional
from torch import nn

from stpl.data.pairs import PairBatch
from stpl.errors import StplError


def init_from_environment(device: torch.device) -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); gloo on CPU, NCCL on CUDA. True when joined."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_size()[0] == 0


def barrier() -> None:
    if rank_and_size()[1] > 1:
        dist.barrier()


def from_main(value: Any) -> Any:
    """Rank 0's `value` on every rank (a decision only rank 0 can make, e.g. refusing a run folder)."""
    if rank_and_size()[1] == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_rows(rows: torch.Tensor, with_gradient: bool = False) -> tuple[torch.Tensor, int]:
    """Every rank's rows [n_r, ...] concatenated in rank order, and where this rank's own rows start. Ranks may
    hold different numbers of rows. with_gradient: backward hands each rank the gradient of its own rows, summed
    over every rank's loss (as if one process had computed all the losses)."""
    rank, size = rank_and_size()
    if size == 1:
        return rows, 0
    count = torch.tensor([len(rows)], device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(size)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    padded = torch.cat((rows, rows.new_zeros((max(sizes) - len(rows), *rows.shape[1:]))))
    if with_gradient:
        parts = distributed_functional.all_gather(padded)
    else:
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)]), sum(sizes[:rank])


def shard(batch: PairBatch) -> PairBatch:
    """This rank's pairs of a global batch: every world-size-th pair from its rank (the global batch size must be a
    multiple of the world size for the ranks' shares to be equal)."""
    rank, size = rank_and_size()
    if size == 1:
        return batch
    if len(batch.index) % size:
        raise StplError(
            f"a batch of {len(batch.index)} pairs does not divide among {size} processes: set the batch size to a "
            "multiple of the number of processes"
        )

    def part(tensor: torch.Tensor | None) -> torch.Tensor | None:
        return None if tensor is None else tensor[rank::size]

    later = None if batch.later is None else shard(batch.later)
    source = None if batch.source is None else shard(batch.source)
    return PairBatch(part(batch.current), part(batch.previous), part(batch.flow), part(batch.label),
                     batch.index[rank::size], later, part(batch.forward_flow), part(batch.has_later),
                     source)  # fmt: skip


def all_finite(value: torch.Tensor) -> bool:
    """Whether `value` is finite on every rank (each rank must take the same branch, or the others would wait)."""
    finite = torch.isfinite(value).all().to(torch.float32).reshape(1)
    if rank_and_size()[1] > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item() > 0)


def any_rank(flags: list[bool]) -> list[bool]:
    """Each flag true if it is true on any rank (a stop asked of one process, or a checkpoint one process finds
    due, must be taken by all of them at the same step)."""
    if rank_and_size()[1] == 1:
        return flags
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    values = torch.tensor([float(flag) for flag in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(value > 0) for value in values.tolist()]


def average_gradients(optimizer: torch.optim.Optimizer) -> None:
    size = rank_and_size()[1]
    if size == 1:
        return
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
                parameter.grad.div_(size)


def average_buffers(model: nn.Module) -> None:
    """Normalisation statistics (and any float buffer) averaged across ranks: each saw only its share."""
    size = rank_and_size()[1]
    if size == 1:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(size)


def shutdown() -> None:
    """Leave the process group (torchrun's processes must do so before they exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
