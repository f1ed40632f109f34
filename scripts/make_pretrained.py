"""Turn a finished `stpl train-source` run into a shipped model: src/stpl/pretrained/<file> and its record.

    python scripts/make_pretrained.py --run RUN_DIR --name camvid-day --data-root ../shared/data/camvid

The weights are stored in half precision when that keeps the held-out mIoU within 0.2 of float32 (else float32).
The record (<file>.json) says how the model was made (config, data, seed, steps, the code's commit), its sha256,
and its mIoU on held-out frames: for camvid-day, the 0016E5 frames of the seconds the 15 Hz protocols set aside
(7500..8700) less the 15 Hz block they adapt on and score (7959..8159), i.e. frames no benchmark uses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

from stpl.config import build_config, with_overrides
from stpl.data import build_dataset, dataset_classes
from stpl.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from stpl.engine.checkpoint_model import model_from_checkpoint
from stpl.engine.evaluate import ConfusionMatrix, accumulate, scores
from stpl.pretrained import SHIPPED

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "src" / "stpl" / "pretrained"
HALF_PRECISION_LOSS = 0.2  # mIoU points half precision may cost and still be shipped
# Held-out frames per shipped model: (sequence, [first, last] ranges) of labelled frames that neither its training
# set nor any benchmark's adaptation or evaluation set contains.
HELD_OUT = {"camvid-day": ("0016E5", [(7500, 7958), (8160, 8700)])}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def half_precision(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value.half() if value.is_floating_point() else value for name, value in weights.items()}


def held_out_score(checkpoint: Checkpoint, name: str, data_root: str) -> dict:
    """mIoU of the checkpoint's model over every held-out range of `name`, as one confusion matrix."""
    sequence, ranges = HELD_OUT[name]
    config = build_config(base=checkpoint.config, sets=[f"data.camvid.root={data_root}"])
    model = model_from_checkpoint(checkpoint, config, skip_adaptation_modules=False)
    confusion = ConfusionMatrix(len(checkpoint.class_names))
    frames = 0
    for first, last in ranges:
        part = with_overrides(
            config,
            {
                "data": {
                    "camvid": {"target_sequence": sequence, "eval_range": [first, last], "target_corruption": "none"}
                }
            },
        )
        dataset = build_dataset(part, "eval", with_labels=True)
        accumulate(model, dataset, config.eval.batch_size, confusion, f"held-out {first}-{last}")
        frames += len(dataset)
    return scores(confusion, list(dataset_classes(config)), None, frames) | {"sequence": sequence, "ranges": ranges}


def git_commit(folder: Path) -> str:
    result = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished train-source run folder")
    parser.add_argument("--name", required=True, choices=list(SHIPPED))
    parser.add_argument("--data-root", required=True, help="the CamVid folder (for the held-out score)")
    parser.add_argument("--code", type=Path, default=Path("."), help="the checkout that trained it (its commit)")
    args = parser.parse_args()

    trained = load_checkpoint(args.run / "model.safetensors")
    full = held_out_score(trained, args.name, args.data_root)
    half_weights = half_precision(trained.model)
    half = held_out_score(Checkpoint(model=half_weights, meta=trained.meta), args.name, args.data_root)
    use_half = full["mIoU"] - half["mIoU"] <= HALF_PRECISION_LOSS
    target = PRETRAINED_DIR / SHIPPED[args.name]
    meta = {key: value for key, value in trained.meta.items() if key not in ("versions", "identity")}
    meta |= {"shipped_as": args.name, "precision": "float16" if use_half else "float32"}
    save_checkpoint(target, half_weights if use_half else trained.model, meta)
    metrics = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines() if line]
    record = {
        "name": args.name,
        "file": target.name,
        "sha256": sha256(target),
        "bytes": target.stat().st_size,
        "precision": meta["precision"],
        "classes": trained.class_names,
        "made_by": "stpl train-source (the supervised recipe of docs/recipe.md), then scripts/make_pretrained.py",
        "code_commit": git_commit(args.code),
        "seed": trained.config["seed"],
        "steps": trained.step,
        "train_seconds": metrics[-1].get("seconds") if metrics else None,
        "data": {key: trained.config["data"]["camvid"][key] for key in ("source_sequences", "source_exclude")}
        | {"size": [trained.config["data"]["height"], trained.config["data"]["width"]]},
        "held_out": {
            "frames": full["num_frames"],
            "sequence": full["sequence"],
            "ranges": full["ranges"],
            "mIoU_float32": full["mIoU"],
            "mIoU_float16": half["mIoU"],
            "per_class": (half if use_half else full)["per_class"],
        },
        "config": {key: trained.config[key] for key in ("seed", "data", "flow", "model", "train")},
        "python": sys.version.split()[0],
    }
    target.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("file", "sha256", "bytes", "precision", "held_out")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
