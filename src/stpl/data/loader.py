"""Training batches in step order, prepared ahead by worker processes when asked (torch DataLoader).

`RandomBatches.get(step)` is a pure function of (seed, step), so workers reading a disk-stored split in parallel
give the very batches the training process would have made itself, and a resumed run starts at its step.
"""

from __future__ import annotations

import signal
from collections.abc import Generator

from torch.utils.data import DataLoader, Dataset

from stpl.data.pairs import PairBatch, RandomBatches, SourceAndTarget
from stpl.runlock import close_inherited_locks


class _Steps(Dataset):
    def __init__(self, batches: RandomBatches | SourceAndTarget, start: int, stop: int):
        self.batches, self.start, self.stop = batches, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, position: int) -> PairBatch:
        return self.batches.get(self.start + position)


def _worker_start(worker_id: int) -> None:
    # A worker must not hold the run folder's lock: after a kill of the training process it would keep the folder
    # locked for seconds, and a rerun would be refused naming a dead process.
    close_inherited_locks()
    # A stop sent to the whole process group (Ctrl-C, torchrun, Slurm, kill -- -PGID) is the training process's to
    # handle (it checkpoints, then closes the loader); a worker dying of it first would crash the step.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def batches_in_order(
    batches: RandomBatches | SourceAndTarget, start: int, stop: int, workers: int = 0, pin_memory: bool = False
) -> Generator[PairBatch, None, None]:
    """The batches of steps start..stop-1; `workers` > 0 prepares them in that many forked processes, two batches
    ahead each; `pin_memory` page-locks them for a faster copy to a GPU."""
    if workers == 0:
        for step in range(start, stop):
            batch = batches.get(step)
            yield batch.pin_memory() if pin_memory else batch
        return
    loader = DataLoader(
        _Steps(batches, start, stop),
        batch_size=None,  # each item is already a whole batch
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        multiprocessing_context="fork",  # disk-stored splits read through descriptors the workers inherit
        prefetch_factor=2,
        worker_init_fn=_worker_start,
    )
    yield from loader  # closing this generator early drops the loader's iterator, which stops its workers
