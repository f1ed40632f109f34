"""The config a command runs with: --config and --set over the defaults, or over a checkpoint's own data, flow and
model settings; and the refusal of a --set for a data set the run does not read."""

from __future__ import annotations

import argparse
from pathlib import Path

from stpl.config import DATASET_NAMES, Config, build_config, marked_keys
from stpl.config.files import environment_sets
from stpl.engine.checkpoint_model import checkpoint_settings
from stpl.errors import StplError
from stpl.pretrained import resolve_checkpoint


def load_config(args: argparse.Namespace, checkpoint: Path | None = None) -> Config:
    """--config and --set over the defaults; without --config, over the `checkpoint`'s data, flow and model
    settings (so `stpl eval --ckpt C` scores on the data C was made for, not on default-size data)."""
    sets = [*environment_sets(), *args.sets]  # STPL_DATA places the data sets; --set beats it
    if args.config is not None or checkpoint is None:
        config = build_config(args.config, sets)
    else:
        base = checkpoint_settings(resolve_checkpoint(checkpoint))
        print(f"[config] no --config: data, flow and model settings from {checkpoint}", flush=True)
        config = build_config(sets=sets, base=base)
    check_data_sets_read(config, args.sets)
    return config


# where a data set's frames are (config.LOCAL_PATH keys under data.<data set>), as dotted keys
DATA_PLACES = {".".join(path) for path in marked_keys("local_path") if path[0] == "data" and path[1] in DATASET_NAMES}


def check_data_sets_read(config: Config, sets: list[str]) -> None:
    """Refuse a --set that says which frames to use for a data set the run does not read: data.frames.* (one's own
    video) or another data set's folder (data.frames.path with data.dataset=camvid would adapt on CamVid and say
    nothing). Another data set's tuning values are left alone: read or not, they change nothing."""
    read = {config.data.dataset, config.data.source_dataset or config.data.dataset}
    for text in sets:
        key = text.split("=", 1)[0].strip()
        parts = key.split(".")
        if len(parts) < 3 or parts[0] != "data" or parts[1] not in DATASET_NAMES or parts[1] in read:
            continue
        if parts[1] == "frames" or key in DATA_PLACES:
            hint = "; for your own video give --input PATH" if parts[1] == "frames" else ""
            raise StplError(
                f"--set {key}: data.{parts[1]}.* is read only with "
                f"data.dataset={parts[1]}, and this run reads {config.data.dataset}{hint}"
            )
