"""`stpl adapt --method auto`: adapt with a few methods, keep the source model as one more candidate, and choose by
the label-free estimate on the adaptation frames, so that adapting never knowingly leaves the user worse.

    OUT/candidates/<method>/     one ordinary adaptation run per candidate (resumed or reused like any run)
    OUT/model.safetensors        a copy of the chosen model (the source model's weights when it is kept)
    OUT/choice.json              every candidate's estimate and parts, the choice and the reason in words

An adapted candidate is chosen only when its estimate exceeds the source model's by adapt.auto_margin; otherwise
the source model is kept. The candidates and the margin are settings (adapt.auto_candidates, adapt.auto_margin),
chosen on held-out adaptation frames (docs/label_free.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from stpl import workflows
from stpl.adapt import uses_source
from stpl.atomic import atomic_write, write_json
from stpl.config import Config, with_overrides
from stpl.engine.checkpoint import read_meta
from stpl.engine.run_files import FINAL_CHECKPOINT
from stpl.errors import StplError
from stpl.estimation import estimate_checkpoint, estimation_pairs

SOURCE = "source"  # the candidate that keeps the source model as it is
CHOICE_FILE = "choice.json"


def choose(estimates: dict[str, float], margin: float) -> tuple[str, str]:
    """The chosen candidate and the reason in words; `estimates` holds SOURCE and the adapted candidates."""
    source = estimates[SOURCE]
    adapted = {name: value for name, value in estimates.items() if name != SOURCE}
    if not adapted:
        return SOURCE, "kept the source model: there was no adapted candidate"
    best = max(adapted, key=lambda name: adapted[name])
    if adapted[best] > source + margin:
        return best, (
            f"chose {best}: its label-free estimate {adapted[best]:.1f} is the highest and beats the source "
            f"model's {source:.1f} by more than {margin:g}"
        )
    if all(value < source for value in adapted.values()):
        return SOURCE, f"kept the source model: every adapted candidate scored lower (best {best} {adapted[best]:.1f} "
        f"vs {source:.1f})"
    return SOURCE, (
        f"kept the source model: no adapted candidate beat its estimate {source:.1f} by more than {margin:g} "
        f"(best {best} {adapted[best]:.1f})"
    )


def check_candidates(candidates: tuple[str, ...]) -> None:
    with_source = [name for name in candidates if uses_source(name)]
    if with_source:
        raise StplError(f"adapt.auto_candidates: {', '.join(with_source)} use source data; auto adapts source-free")


def adapt_auto(config: Config, source_checkpoint: Path, out_dir: Path, finished: dict[str, Path] | None = None) -> Path:
    """Adapt with each of adapt.auto_candidates, score them and the source model, copy the chosen one to
    OUT/model.safetensors; returns that path. `finished`: candidates already adapted with this very config and
    source model elsewhere (`stpl bench` passes its own runs), used instead of adapting again."""
    out_dir, source_checkpoint = Path(out_dir), Path(source_checkpoint)
    check_candidates(config.adapt.auto_candidates)
    workflows.check_out_dir(out_dir)
    if config.data.dataset == "frames" and not config.data.frames.classes:  # own video: the model's classes
        classes = read_meta(source_checkpoint).get("class_names") or []
        config = with_overrides(config, {"data": {"frames": {"classes": classes}}})
    paths = {SOURCE: source_checkpoint}
    for name in config.adapt.auto_candidates:
        if finished and name in finished:
            paths[name] = Path(finished[name])
            print(f"[auto] candidate {name}: adapted before ({paths[name]})", flush=True)
            continue
        print(f"[auto] candidate {name}", flush=True)
        candidate = with_overrides(config, {"adapt": {"method": name, "estimate": False}})
        paths[name] = workflows.adapt(candidate, source_checkpoint, out_dir / "candidates" / name)
    return choose_and_copy(config, paths, out_dir)


def choose_and_copy(config: Config, paths: dict[str, Path], out_dir: Path) -> Path:
    """Score every candidate on the adaptation frames, choose, and copy the chosen model into `out_dir`."""
    device = workflows.setup_runtime(config)
    pairs = estimation_pairs(config)
    scores: dict[str, Any] = {}
    for name, path in paths.items():
        scores[name] = estimate_checkpoint(path, config, device, reference=paths[SOURCE], pairs=pairs)
        print(f"[auto] {name}: label-free estimate {scores[name]['estimate']:.1f}", flush=True)
    chosen, reason = choose({name: s["estimate"] for name, s in scores.items()}, config.adapt.auto_margin)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / FINAL_CHECKPOINT
    atomic_write(final, lambda temporary: shutil.copyfile(paths[chosen], temporary))
    choice = {"chosen": chosen, "reason": reason, "margin": config.adapt.auto_margin, "frames": len(pairs),
              "candidates": {name: {"checkpoint": str(paths[name]), **scores[name]} for name in paths}}  # fmt: skip
    write_json(out_dir / CHOICE_FILE, choice)
    print(f"[auto] {reason}", flush=True)
    return final
