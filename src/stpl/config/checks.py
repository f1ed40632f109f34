"""Checks that span several config values (a field's own range is written on the field: ranges.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stpl.config.ranges import field_problems
from stpl.errors import StplError


def validate(config: Any, method_names: Sequence[str]) -> None:
    """Every field's own rule (ranges.field_problems), then the checks across fields; `config`: a
    config.Config (not imported: the schema imports this module), `method_names`: the known adaptation methods."""
    for problem in field_problems(config):
        raise StplError(problem)
    adapt = config.adapt
    if adapt.method not in method_names:
        raise StplError(f"config key 'adapt.method': {adapt.method!r} is not one of {list(method_names)}")
    unknown = [name for name in adapt.auto_candidates if name not in method_names]
    if unknown or not adapt.auto_candidates:
        raise StplError(
            f"config key 'adapt.auto_candidates': {list(adapt.auto_candidates)} must name one or more of "
            f"{list(method_names)}"
        )
    if not (config.device in ("cpu", "cuda") or config.device.startswith(("cuda:", "mps"))):
        raise StplError(f"config key 'device': '{config.device}' is not cpu, cuda, cuda:N or mps")
    for key, amp in {"train.amp": config.train.amp, "adapt.amp": adapt.amp}.items():
        if amp == "fp16" and not config.device.startswith("cuda"):
            raise StplError(f"config key '{key}': fp16 needs device cuda (on CPU use bf16)")
    if (config.eval.label_height > 0) != (config.eval.label_width > 0):
        raise StplError("config keys 'eval.label_height' and 'eval.label_width' must be set together")
    if config.data.synthetic.num_frames <= config.data.frame_gap:
        raise StplError("config key 'data.synthetic.num_frames' must exceed 'data.frame_gap'")
    uda = adapt.uda
    low, high = (*uda.rda_semantic_bands, -1, -1)[:2]
    if len(uda.rda_semantic_bands) != 2 or not 0 <= low <= high < uda.rda_bands:
        raise StplError(
            "config keys 'adapt.uda.rda_bands' and 'adapt.uda.rda_semantic_bands' ([first, last] band kept, "
            "0 <= first <= last < rda_bands) do not fit together"
        )
