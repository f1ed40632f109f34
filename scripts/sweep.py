"""Adapt one source checkpoint under several named settings and score each: for choosing defaults on held-out
frames (never on a target evaluation split). Writes OUT/sweep.json and prints a table.

    python scripts/sweep.py --config configs/camvid_dusk/base.yaml --source-ckpt SRC --out DIR \
        --set data.camvid.adapt_range=[6690,7590] --set data.camvid.eval_range=[7620,8520] \
        --variant adabn="adapt.method=adabn" --variant stpl="adapt.method=stpl adapt.iterations=100"

A variant "source-only" scores the checkpoint itself. Finished variants are reused when run again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stpl.config import build_config
from stpl.workflows import adapt, evaluate_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--source-ckpt", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="applies to every variant")
    parser.add_argument("--variant", action="append", default=[], help='NAME="key=value key=value"')
    args = parser.parse_args()
    results = {}
    summary_path = args.out / "sweep.json"
    if summary_path.is_file():
        results = json.loads(summary_path.read_text())
    for spec in args.variant:
        name, _, settings = spec.partition("=")
        config = build_config(args.config, [*args.sets, *settings.split()])
        checkpoint = args.source_ckpt if name == "source-only" else adapt(config, args.source_ckpt, args.out / name)
        result = evaluate_checkpoint(checkpoint, config)
        results[name] = {"settings": settings, "mIoU": result["mIoU"], "per_class": result["per_class"]}
        args.out.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(results, indent=2))
        print(f"[sweep] {name}: mIoU {result['mIoU']:.2f}", flush=True)
    for name, row in results.items():
        print(f"{name:<28} {row['mIoU']:6.2f}  {row['settings']}")


if __name__ == "__main__":
    main()
