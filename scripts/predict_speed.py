"""Per-frame prediction time of a temporal model with and without the cached earlier frame, against the same
network run frame by frame (the no-temporal control). Writes OUT/predict_speed.json; a benchmark, not a test.

    python scripts/predict_speed.py --out results/predict-speed [--frames 40] [--height 240 --width 320]

The network is MobileNetV2 + LR-ASPP (the default model) with random weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from stpl.atomic import write_json
from stpl.data.pairs import normalize
from stpl.data.palettes import palette_for
from stpl.flow.dis import DISFlow
from stpl.models import build_model
from stpl.predict import Predictor


def clip(count: int, height: int, width: int) -> list[np.ndarray]:
    """A textured image panning right by 2 pixels per frame."""
    wide = np.random.default_rng(0).integers(0, 255, (height, width + 2 * count, 3), dtype=np.uint8)
    return [np.ascontiguousarray(wide[:, 2 * t : 2 * t + width]) for t in range(count)]


def per_frame_seconds(run, frames: list[np.ndarray], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(frames)
        times.append((time.perf_counter() - started) / len(frames))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = (args.height, args.width)
    model = build_model(11, pretrained=False).eval()
    frames = clip(args.frames, *size)
    classes = [f"c{i}" for i in range(11)]
    temporal = Predictor(model, classes, size, temporal=True, palette=palette_for(classes))
    single = Predictor(model, classes, size, temporal=False, palette=palette_for(classes))
    flow = DISFlow("medium")

    @torch.no_grad()
    def uncached(frames: list[np.ndarray]) -> None:  # both frames through the encoder at every step
        for previous, current in zip([frames[0], *frames[:-1]], frames, strict=True):
            field = torch.from_numpy(flow(current, previous)).permute(2, 0, 1)[None]
            images = [normalize(torch.from_numpy(f).permute(2, 0, 1)[None]) for f in (current, previous)]
            model(images[0], images[1], field)

    seconds = {
        "single-frame": per_frame_seconds(single.predict, frames, args.repeats),
        "temporal-cached": per_frame_seconds(temporal.predict, frames, args.repeats),
        "temporal-uncached": per_frame_seconds(uncached, frames, args.repeats),
    }
    result = {
        "size": list(size), "frames": args.frames, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "seconds_per_frame": seconds,
        "ratios": {
            "temporal-cached/single-frame": seconds["temporal-cached"] / seconds["single-frame"],
            "temporal-uncached/single-frame": seconds["temporal-uncached"] / seconds["single-frame"],
        },
    }  # fmt: skip
    write_json(args.out / "predict_speed.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
