"""Disk-stored splits (data.storage=disk) and batches prepared by worker processes: the same numbers as in memory."""

import gc
import os

import numpy as np
import pytest
import torch

from stpl.cli import main
from stpl.config import build_config
from stpl.data import RandomBatches, build_dataset
from stpl.data.loader import batches_in_order
from stpl.data.neighbours import with_later_neighbours
from stpl.data.storage import DiskRows, RowSink, SelectedRows, zeros_like
from stpl.engine.checkpoint import load_checkpoint


def set_args(settings):
    return [arg for setting in settings for arg in ("--set", setting)]


def test_rows_written_to_disk_read_back_as_numpy_would_and_leave_no_file(tmp_path):
    rows = np.random.default_rng(0).integers(0, 255, (7, 5, 3, 3), dtype=np.uint8)
    sink = RowSink(tmp_path)
    sink.add(rows[:3])
    sink.add(rows[3:])
    stored = sink.finish()
    assert isinstance(stored, DiskRows) and stored.shape == rows.shape and stored.dtype == np.uint8 and len(stored) == 7
    assert list(tmp_path.iterdir()) == []  # unlinked at once: an interrupted run leaves nothing behind
    for index in (2, -1, [4, 0, 6], np.array([1, 1]), slice(1, 4)):
        np.testing.assert_array_equal(stored[index], rows[index])
    np.testing.assert_array_equal(np.stack(list(stored)), rows)
    with pytest.raises(IndexError):
        stored[7]
    with pytest.raises(ValueError, match="rows"):
        sink.add(np.zeros((1, 5, 3, 4), np.uint8))
    in_memory = RowSink(None)
    in_memory.add(rows)
    assert isinstance(in_memory.finish(), np.ndarray)
    nothing = RowSink(tmp_path)
    nothing.add(rows[:0])
    assert nothing.finish().shape == (0, *rows.shape[1:])  # no scratch file for no rows
    zeros = zeros_like(stored)
    assert zeros.shape == rows.shape and not zeros[[0, 6]].any()
    chosen = SelectedRows(stored, np.array([-1, 6, 0]), rows.shape[1:], np.uint8)
    np.testing.assert_array_equal(chosen[[2, 0, 1]], np.stack([rows[0], np.zeros_like(rows[0]), rows[6]]))


@pytest.mark.parametrize("flow", ["dis", "exact"])
def test_a_disk_stored_split_gives_the_batches_of_the_in_memory_one(tmp_path, toy_settings, flow):
    settings = [*toy_settings, f"flow.method={flow}", "data.synthetic.num_frames=4"]
    memory = build_dataset(build_config(sets=settings), "source", with_labels=True)
    disk_config = build_config(sets=[*settings, "data.storage=disk", f"data.storage_dir={tmp_path / 'scratch'}"])
    disk = build_dataset(disk_config, "source", with_labels=True)
    assert not isinstance(disk.frames, np.ndarray) and not isinstance(disk.flows, np.ndarray)
    np.testing.assert_array_equal(disk.pairs, memory.pairs)
    np.testing.assert_array_equal(disk.flows[:], memory.flows)
    for dataset in (memory, disk):
        dataset.batches = RandomBatches(dataset, 3, seed=5, hflip=True, scale_range=(0.75, 1.5))
    for step in (0, 1, 4):
        expected, got = memory.batches.get(step), disk.batches.get(step)
        for name in ("current", "previous", "flow", "label"):  # same bytes, same code: bit-equal in practice
            torch.testing.assert_close(getattr(got, name), getattr(expected, name), msg=name)
    control = disk.without_time()
    assert not control.flows[[0, len(control) - 1]].any()


def test_the_look_ahead_of_a_disk_stored_split_equals_the_in_memory_one(tmp_path, toy_settings):
    settings = [*toy_settings, "data.synthetic.num_frames=4"]
    config = build_config(sets=settings)
    disk_config = build_config(sets=[*settings, "data.storage=disk", f"data.storage_dir={tmp_path / 'scratch'}"])
    memory = with_later_neighbours(build_dataset(config, "adapt", with_labels=False), config.flow)
    disk = with_later_neighbours(build_dataset(disk_config, "adapt", with_labels=False), disk_config.flow)
    assert isinstance(disk.later.flows, SelectedRows)
    rows = list(range(len(memory)))
    np.testing.assert_array_equal(disk.later.flows[rows], memory.later.flows)
    torch.testing.assert_close(disk.batch(rows).later.current, memory.batch(rows).later.current)


def test_no_scratch_file_stays_open_after_its_split_or_a_failed_build(tmp_path, toy_settings):
    def open_descriptors() -> int:
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    config = build_config(sets=[*toy_settings, "data.storage=disk", f"data.storage_dir={tmp_path}"])
    before = open_descriptors()
    dataset = build_dataset(config, "adapt", with_labels=False)  # frames on disk; no labels, no exact flow
    assert open_descriptors() == before + 1
    del dataset
    assert open_descriptors() == before
    half_built = RowSink(tmp_path)
    half_built.add(np.zeros((2, 3), np.uint8))  # then the build stops (a missing label, too few frames)
    del half_built
    assert open_descriptors() == before


def test_worker_processes_prepare_the_same_batches_in_step_order(tmp_path, toy_settings):
    config = build_config(sets=[*toy_settings, "data.storage=disk", f"data.storage_dir={tmp_path}"])
    batches = RandomBatches(build_dataset(config, "source", with_labels=True), 2, seed=3, hflip=True)
    alone = list(batches_in_order(batches, 1, 6))
    with_workers = list(batches_in_order(batches, 1, 6, workers=2))
    assert len(alone) == len(with_workers) == 5
    # Workers are other processes, possibly with other thread counts; batch preparation is element-wise (no
    # reduction whose order threads could change), so the batches are bit-equal and the default tolerance unused.
    for a, b in zip(alone, with_workers, strict=True):
        assert a.index == b.index
        torch.testing.assert_close(b.current, a.current)
        torch.testing.assert_close(b.flow, a.flow)


def test_adaptation_from_disk_with_workers_ends_at_the_in_memory_weights(tmp_path, toy_settings):
    assert main(["train-source", "--out", str(tmp_path / "source"), *set_args(toy_settings)]) == 0
    source = str(tmp_path / "source" / "model.safetensors")
    adapt = [*toy_settings, "adapt.iterations=3", "adapt.teacher_later=true"]
    streamed = [*adapt, "data.storage=disk", f"data.storage_dir={tmp_path / 'scratch'}", "data.loader_workers=2"]
    assert main(["adapt", "--source-ckpt", source, "--out", str(tmp_path / "memory"), *set_args(adapt)]) == 0
    assert main(["adapt", "--source-ckpt", source, "--out", str(tmp_path / "disk"), *set_args(streamed)]) == 0
    memory = load_checkpoint(tmp_path / "memory" / "model.safetensors")
    disk = load_checkpoint(tmp_path / "disk" / "model.safetensors")
    # bit-equal batches through the same training code in this process: equal weights; the default tolerance
    # (~11 ulps) would still fail a batch out of order or a look ahead read from the wrong row
    for key, value in memory.model.items():
        torch.testing.assert_close(disk.model[key], value, msg=key)
