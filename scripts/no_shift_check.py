"""A clip like the training data, where adapting does not help: does `stpl adapt --method auto` keep the source model?

    python scripts/no_shift_check.py --work runs/no-shift     # -> results/label-free/no-shift/results.{json,md}

The shipped camvid-day model on the clean CamVid day frames of the 15 Hz protocols (0016E5 7959..8159, which its
training left out; camvid-15hz-night's split without the night corruption): `stpl adapt --method auto` on the
first half, then every candidate scored on the labelled second half (the result) and on the labelled first half
(held out: what adapt.auto_margin was chosen on). Reruns reuse the finished runs under --work.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ["--config", "camvid-15hz-night", "--set", "data.camvid.target_corruption=none"]


def stpl(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "stpl", *args], check=True)


def score(checkpoint: str, split: str, out: Path) -> float:
    stpl("eval", "--ckpt", checkpoint, *PROTOCOL, "--set", f"eval.split={split}", "--out", str(out))
    return json.loads((out / "eval.json").read_text())["mIoU"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="run folders (reused when finished)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "label-free" / "no-shift")
    args = parser.parse_args(argv)
    auto = args.work / "auto"
    stpl("adapt", "--source-ckpt", "camvid-day", "--method", "auto", *PROTOCOL, "--out", str(auto))
    choice = json.loads((auto / "choice.json").read_text())
    rows = {}
    for name, candidate in choice["candidates"].items():
        checkpoint = "camvid-day" if name == "source" else candidate["checkpoint"]
        rows[name] = {"estimate": candidate["estimate"], "mIoU": score(checkpoint, "eval", args.work / f"eval-{name}"),
                      "adapt_frames_mIoU": score(checkpoint, "adapt", args.work / f"adapt-eval-{name}")}  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = {"commit": commit, "chosen": choice["chosen"], "reason": choice["reason"], "margin": choice["margin"],
              "candidates": rows}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# camvid-day on clean CamVid day frames (no shift): does auto keep the source model?", "",
             f"commit `{commit}`; `python scripts/no_shift_check.py`; estimates on the unlabelled adaptation frames "
             "(first half), mIoU on the labelled second half and, held out, on the first half.", "",
             "| candidate | label-free estimate | mIoU (second half) | mIoU (adaptation frames) |",
             "|---|---|---|---|"]  # fmt: skip
    for name, row in rows.items():
        lines.append(f"| {name} | {row['estimate']:.1f} | {row['mIoU']:.2f} | {row['adapt_frames_mIoU']:.2f} |")
    lines += ["", f"auto: {choice['reason']}", ""]
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
