"""Which DIS preset and flow resolution: warp agreement on labelled source frames against speed. A benchmark, not a
test: writes OUT/results.json and OUT/results.md.

    python scripts/flow_presets.py --config configs/camvid_15hz_night/base.yaml --out results/flow-presets

For each source pair (frame t, frame t-k) with both labels: the label of t-k warped to t by the flow (nearest
neighbour) is compared with the label of t on the pixels labelled in both and inside the earlier frame; "agreement"
is the share that match (zero flow gives the floor). The flow is computed at the data size or at half of it (then
resized with its vectors). Source frames only: no target frame is read.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from stpl.atomic import write_json, write_text
from stpl.config import build_config
from stpl.constants import IGNORE_INDEX
from stpl.data import build_dataset
from stpl.flow.dis import PRESETS, DISFlow
from stpl.models.warp import warp_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--pairs", type=int, default=120, help="source pairs used (evenly spread)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = build_config(args.config, args.sets)
    dataset = build_dataset(config, "source", with_labels=True)
    usable = [i for i, (c, p) in enumerate(dataset.pairs) if c != p and (dataset.labels[p] != IGNORE_INDEX).any()]
    chosen = [usable[i] for i in np.linspace(0, len(usable) - 1, min(args.pairs, len(usable))).astype(int)]
    rows = {}
    for name, estimator in [("zero flow", None)] + [
        (f"{preset} @ {scale:g}", DISFlow(preset, scale)) for preset in PRESETS for scale in (1.0, 0.5)
    ]:
        agree = total = 0
        seconds = 0.0
        for index in chosen:
            current, previous = dataset.pairs[index]
            started = time.perf_counter()
            if estimator is None:
                flow = np.zeros((*dataset.frames.shape[1:3], 2), np.float32)
            else:
                flow = estimator(dataset.frames[current], dataset.frames[previous])
            seconds += time.perf_counter() - started
            field = torch.from_numpy(flow).permute(2, 0, 1)[None]
            warped = warp_labels(torch.from_numpy(dataset.labels[previous]).long()[None], field, IGNORE_INDEX)[0]
            target = torch.from_numpy(dataset.labels[current]).long()
            both = (warped != IGNORE_INDEX) & (target != IGNORE_INDEX)
            agree += int((warped[both] == target[both]).sum())
            total += int(both.sum())
        rows[name] = {"agreement": 100.0 * agree / max(total, 1), "pairs_per_s": len(chosen) / max(seconds, 1e-9)}
        print(f"{name:<16} agreement {rows[name]['agreement']:.2f} %  {rows[name]['pairs_per_s']:.0f} pairs/s")
    size = f"{config.data.height}x{config.data.width}"
    result = {"config": str(args.config), "size": size, "pairs": len(chosen), "rows": rows}
    write_json(args.out / "results.json", result)
    lines = [f"# DIS presets on {len(chosen)} source pairs at {size} ({args.config})", "",
             "| flow | label agreement (%) | pairs/s |", "|---|---|---|",
             *(f"| {n} | {r['agreement']:.2f} | {r['pairs_per_s']:.0f} |" for n, r in rows.items())]  # fmt: skip
    write_text(args.out / "results.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
