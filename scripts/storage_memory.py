"""Peak memory and throughput of adaptation against the number of target frames, with the split held in memory or
read per batch from disk (data.storage). A benchmark, not a test: writes OUT/results.json and OUT/results.md.

    python scripts/storage_memory.py --out results/storage-memory

Each cell is a separate `stpl adapt` process on synthetic target clips at 240x320 (the default STPL settings, a
few steps) from one small source model trained first; its peak resident memory (and that of its DataLoader
workers) is read from the kernel when it ends, and its steps per second from its metrics file (steps after the
first, so that start-up is not counted).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from stpl.atomic import write_json, write_text

COMMON = [
    "data.height=240", "data.width=320", "data.synthetic.num_frames=10", "data.synthetic.source_clips=4",
    "model.pretrained=false", "threads=1", "flow.workers=1",
]  # fmt: skip


def set_args(settings: list[str]) -> list[str]:
    return [argument for setting in settings for argument in ("--set", setting)]


def run_child(arguments: list[str]) -> dict[str, float]:
    """`stpl` with `arguments` in a child process; its own and its children's peak RSS in MiB."""
    code = (
        "import json, resource, sys\n"
        "from stpl.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print('PEAK ' + json.dumps({'own_mib': own, 'workers_mib': workers}))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"stpl {' '.join(arguments)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("PEAK "))
    return json.loads(line[5:])


def steps_per_second(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0], rows[-1]
    return (last["step"] - first["step"]) / max(last["seconds"] - first["seconds"], 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/stpl-storage-memory"), help="runs and caches")
    parser.add_argument("--frames", default="200,2000", help="target adaptation frames per cell")
    parser.add_argument("--iterations", type=int, default=12)
    args = parser.parse_args()
    common = [*COMMON, f"flow.cache_dir={args.work / 'flow'}", f"data.storage_dir={args.work / 'scratch'}"]
    source = args.work / "source"
    run_child(["train-source", "--out", str(source), *set_args([*common, "train.iterations=2"])])
    cells = []
    for frames in [int(f) for f in args.frames.split(",")]:
        for storage, workers in (("memory", 0), ("disk", 0), ("disk", 2)):
            name = f"{frames}-{storage}-w{workers}"
            sets = [
                *common, f"data.synthetic.adapt_clips={frames // 10}", f"data.storage={storage}",
                f"data.loader_workers={workers}", f"adapt.iterations={args.iterations}", "adapt.log_every=1",
            ]  # fmt: skip
            out = args.work / "runs" / name
            peak = run_child(["adapt", "--source-ckpt", str(source / "model.safetensors"), "--out", str(out),
                              *set_args(sets)])  # fmt: skip
            cell = {"frames": frames, "storage": storage, "loader_workers": workers, **peak,
                    "steps_per_s": steps_per_second(out)}  # fmt: skip
            cells.append(cell)
            print(json.dumps(cell), flush=True)
    write_json(args.out / "results.json", {"settings": common, "iterations": args.iterations, "cells": cells})
    lines = ["# Peak memory of adaptation against target frames (synthetic, 240x320, batch 8)", "",
             "| frames | storage | loader workers | peak RSS (MiB) | workers' peak (MiB) | steps/s |",
             "|---|---|---|---|---|---|",
             *(f"| {c['frames']} | {c['storage']} | {c['loader_workers']} | {c['own_mib']:.0f} | "
               f"{c['workers_mib']:.0f} | {c['steps_per_s']:.3f} |" for c in cells)]  # fmt: skip
    write_text(args.out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
