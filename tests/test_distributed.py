"""Data-parallel training with the gloo backend: two processes, each with half of every global batch, follow the
single-process trajectory on the same global batch, and hold identical weights throughout."""

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stpl.data.pairs import PairBatch
from stpl.engine.loop import train_step
from stpl.engine.sync_norm import synced_norms
from test_baselines import make_method, toy_batch

# Every pixel a pseudo-label (threshold 0) and frozen normalisation statistics: the loss is a plain mean over
# equally many pixels per process, so the mean of the two processes' gradients is the whole batch's gradient.
SETS = ["adapt.norm=frozen", "adapt.confidence=global", "adapt.threshold=0.0", "adapt.teacher=ema"]
# Batch statistics in the student (norm "update"): equal to one process only when normalised over the global batch.
SYNCED_SETS = [*SETS, "adapt.norm=update"]
STEPS = 3


def make_distributed_method(synced: bool):
    torch.manual_seed(0)
    method = make_method("self-training", *(SYNCED_SETS if synced else SETS))
    if synced:
        synced_norms(method.model)
    return method


WORKER = """
import json, sys
import torch
import torch.distributed as dist
sys.path.insert(0, sys.argv[4])
from test_distributed import STEPS, global_batch, make_distributed_method
from stpl.engine.loop import train_step
rank, world, init_file, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[5]
dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
method = make_distributed_method(sys.argv[6] == "synced")
optimizer = torch.optim.SGD(method.param_groups(), lr=0.05, momentum=0.9)
seen = []
step_alone = method.step
method.step = lambda batch, step: seen.append(batch.index) or step_alone(batch, step)
losses = []
for step in range(STEPS):
    _, total = train_step(method, optimizer, global_batch(), step)
    total = total.detach().clone()
    dist.all_reduce(total)
    losses.append(total.item() / world)
weights = torch.cat([p.detach().flatten() for p in method.model.parameters()])
teacher = torch.cat([p.detach().flatten() for p in method.teacher.model.parameters()])
result = {"losses": losses, "seen": seen, "weights": weights.tolist()[:2000]}
result["teacher_sum"] = teacher.double().sum().item()
json.dump(result, open(f"{out}/rank{rank}.json", "w"))
dist.destroy_process_group()
"""


def global_batch() -> PairBatch:
    """Four pairs: two toy batches."""
    a, b = toy_batch(0), toy_batch(1)
    return PairBatch(torch.cat((a.current, b.current)), torch.cat((a.previous, b.previous)),
                     torch.cat((a.flow, b.flow)), None, [0, 1, 2, 3])  # fmt: skip


@pytest.mark.parametrize("norm", ["frozen", "synced"])
def test_two_gloo_processes_follow_the_single_process_trajectory(tmp_path, norm):
    """frozen: statistics stored; synced: batch statistics over the global batch (sync_norm)."""
    tests = str(Path(__file__).resolve().parent)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    init_file = tmp_path / "init"
    workers = [
        subprocess.Popen([sys.executable, str(script), str(rank), "2", str(init_file), tests, str(tmp_path), norm])
        for rank in range(2)
    ]
    assert [worker.wait(timeout=300) for worker in workers] == [0, 0]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert ranks[0]["seen"] == [[0, 2]] * STEPS and ranks[1]["seen"] == [[1, 3]] * STEPS  # each its half
    # Exact: all_reduce hands every rank the same sums (a + b == b + a; gloo reduces each element once and
    # broadcasts it) and the ranks then run the same optimiser step on the same numbers.
    assert ranks[0]["weights"] == ranks[1]["weights"]  # every rank holds the same model
    assert ranks[0]["teacher_sum"] == ranks[1]["teacher_sum"]  # and the same EMA teacher

    method = make_distributed_method(norm == "synced")
    optimizer = torch.optim.SGD(method.param_groups(), lr=0.05, momentum=0.9)
    single = [train_step(method, optimizer, global_batch(), step)[1].item() for step in range(STEPS)]
    # Tolerance: float sums in another order (gradients averaged over two halves instead of summed at once).
    for distributed, alone in zip(ranks[0]["losses"], single, strict=True):
        assert abs(distributed - alone) <= 1e-4 * max(1.0, abs(alone))
    weights = torch.cat([p.detach().flatten() for p in method.model.parameters()])[:2000]
    # The workers also run with the machine's default thread count, this process with one. Losses ~1.5 differ by
    # ~1 ulp (measured 2.4e-7, allowed 1.5e-4). Weights |w| <= 1: at most an ulp (1.2e-7) per step for 3 steps
    # (measured 1.5e-8 with 1, 4 and 8 worker threads); 1e-6 + 1e-6|w| allows that, while one half's gradient
    # (4e-5 frozen, 2e-3 synced) or summed instead of averaged gradients (twice the 7.5e-5 moved in 3 steps) fail.
    # No pseudo-label can flip between the two set-ups: at this size the network's logits for a batch of 4 and
    # for its halves are bit-equal (checked with 1, 2 and 4 threads).
    assert torch.allclose(torch.tensor(ranks[0]["weights"]), weights, rtol=1e-6, atol=1e-6)


REFUSAL_WORKER = """
import sys
import torch.distributed as dist
from pathlib import Path
from stpl.config import build_config
from stpl.engine.run_folder import prepare_run_dir, run_folder
from stpl.errors import StplError
rank, init_file, out, result = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
try:
    with run_folder(out):
        prepare_run_dir(out, build_config(), {"seed": 0})
    message = "accepted"
except StplError as error:
    message = str(error)
(result / f"rank{rank}.txt").write_text(message)
dist.destroy_process_group()
"""


@pytest.mark.parametrize("why", ["another run", "locked"])
def test_a_run_folder_refused_by_rank_0_stops_every_process_with_its_message(tmp_path, why):
    from stpl.engine.checkpoint import save_checkpoint
    from stpl.runlock import run_lock

    script = tmp_path / "worker.py"
    script.write_text(REFUSAL_WORKER)
    folder = tmp_path / "taken"
    if why == "another run":  # a finished run of another identity
        save_checkpoint(folder / "model.safetensors", {"w": torch.zeros(1)}, {"identity": {"seed": 1}})
    arguments = [str(tmp_path / "init"), str(folder), str(tmp_path)]
    with run_lock(folder) if why == "locked" else contextlib.nullcontext():  # another run holds it
        workers = [subprocess.Popen([sys.executable, str(script), str(rank), *arguments]) for rank in range(2)]
        assert [worker.wait(timeout=120) for worker in workers] == [0, 0]  # neither waits for the other in vain
    messages = [(tmp_path / f"rank{rank}.txt").read_text() for rank in range(2)]
    assert messages[0] != "accepted" and "taken" in messages[0]
    assert messages[1] == f"rank 0 refused: {messages[0]}"


GATHER_WORKER = """
import json, sys
import torch
import torch.distributed as dist
sys.path.insert(0, sys.argv[4])
from test_distributed import contrast_inputs
from stpl.adapt.stpl import contrast_with_keys
rank, init_file, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
anchors, labels = contrast_inputs()[rank]
anchors.requires_grad_(True)
loss = contrast_with_keys(anchors, labels, None, None, 0.5, "seed", gather=True)
loss.backward()
json.dump({"loss": loss.item(), "grad": anchors.grad.tolist()}, open(f"{out}/rank{rank}.json", "w"))
dist.destroy_process_group()
"""


def contrast_inputs():
    """Two processes' anchors: 3 and 4 unit embeddings of classes {0, 1} (unequal counts on purpose)."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(7, 5, generator=generator), dim=1)
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    return [(rows[:3].clone(), labels[:3]), (rows[3:].clone(), labels[3:])]


def test_gathered_keys_give_each_process_the_global_contrast_and_its_gradient(tmp_path):
    """Each process's loss is its anchors against all 7 keys; each process's gradient is that of the sum of both
    losses with respect to its own anchors (the backward of the gather sends it there)."""
    from stpl.losses.pixel_contrast import pixel_contrastive_loss

    script = tmp_path / "worker.py"
    script.write_text(GATHER_WORKER)
    tests = str(Path(__file__).resolve().parent)
    arguments = [str(tmp_path / "init"), str(tmp_path), tests]
    workers = [subprocess.Popen([sys.executable, str(script), str(rank), *arguments]) for rank in range(2)]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]

    (a0, l0), (a1, l1) = contrast_inputs()
    a0.requires_grad_(True)
    a1.requires_grad_(True)
    keys, key_labels = torch.cat((a0, a1)), torch.cat((l0, l1))
    losses = []
    for offset, (anchors, labels) in ((0, (a0, l0)), (3, (a1, l1))):
        identity = torch.zeros(len(anchors), 7, dtype=torch.bool)
        identity[:, offset : offset + len(anchors)].fill_diagonal_(True)
        losses.append(pixel_contrastive_loss(anchors, labels, keys, key_labels, 0.5, "seed", identity))
    (losses[0] + losses[1]).backward()
    # Losses ~2 and gradients ~1 from 7-key log-sum-exps, gathered vs concatenated keys: a few ulps at most
    # (measured bit-equal); 1e-5 survives another order, while a missing key or gradient path is off by > 1e-2.
    for rank, anchors in enumerate((a0, a1)):
        assert abs(ranks[rank]["loss"] - losses[rank].item()) < 1e-5
        torch.testing.assert_close(torch.tensor(ranks[rank]["grad"]), anchors.grad, atol=1e-5, rtol=1e-4)


SYNCED_NORM_WORKER = """
import sys
import torch
import torch.distributed as dist
from stpl.engine.sync_norm import synced_norms
rank, init_file, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
torch.manual_seed(0)
whole = torch.randn(4, 3, 200, 200) * 3 + 5
norm = synced_norms(torch.nn.Sequential(torch.nn.BatchNorm2d(3))).train()
output = norm(whole[2 * rank : 2 * rank + 2].half())  # half precision, 80,000 pixels a channel on each process
torch.save({"output": output, "running_var": norm[0].running_var}, f"{out}/rank{rank}.pt")
dist.destroy_process_group()
"""


def test_synced_norm_of_half_precision_shares_equals_batch_norm_of_the_whole_batch(tmp_path):
    """Counts past half precision's range (65,504) and values far from zero: the statistics are combined in
    float32, so the two processes' halves come out as one BatchNorm2d over the whole batch would give them."""
    script = tmp_path / "worker.py"
    script.write_text(SYNCED_NORM_WORKER)
    arguments = [str(tmp_path / "init"), str(tmp_path)]
    workers = [subprocess.Popen([sys.executable, str(script), str(rank), *arguments]) for rank in range(2)]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    torch.manual_seed(0)
    whole = torch.randn(4, 3, 200, 200) * 3 + 5
    reference = torch.nn.BatchNorm2d(3).train()
    expected = reference(whole.half().float())
    for rank in range(2):
        saved = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert saved["output"].dtype == torch.float16 and torch.isfinite(saved["output"]).all()
        # Normalised in float32, then rounded to fp16 once: half an ulp, 2^-11 = 4.9e-4 relative (measured 1.9e-3
        # at |x| ~ 4), plus float32 statistics (~1e-7). 1e-4 + 1e-3|x| is twice that, and a norm over one
        # process's half alone (shifts up to 1.2e-2) fails it at 87 % of the values.
        torch.testing.assert_close(saved["output"].float(), expected[2 * rank : 2 * rank + 2], atol=1e-4, rtol=1e-3)
        # running_var ~1.8 from float32 sums of 160,000 values per channel in another order (measured 1.2e-7);
        # 1e-4 still fails the variance of one process's half (off by ~5e-3).
        torch.testing.assert_close(saved["running_var"], reference.running_var, atol=1e-4, rtol=1e-4)
