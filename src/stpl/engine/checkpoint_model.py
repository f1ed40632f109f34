"""A model from a checkpoint: its architecture rebuilt, its classes and tensors checked against what a command needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stpl.config import Config, build_config, marked_keys, with_overrides
from stpl.data import dataset_classes
from stpl.engine.checkpoint import Checkpoint, read_meta
from stpl.errors import StplError
from stpl.models import VideoSegmenter, build_model
from stpl.models.segmenter import ADAPTATION_MODULES

ARCHITECTURE_KEYS = marked_keys("architecture")
# files and folders on the user's machine (config.LOCAL_PATH): a checkpoint's values for them are dropped, so the
# user's own (or the defaults) apply
LOCAL_PATH_KEYS = marked_keys("local_path")


def without_local_paths(settings: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config (or sections of it) without the keys that name files or folders on this machine."""
    kept = {key: dict(value) if isinstance(value, dict) else value for key, value in settings.items()}
    for path in LOCAL_PATH_KEYS:
        node: Any = kept
        for part in path[:-1]:
            if not isinstance(node, dict) or not isinstance(node.get(part), dict):
                break
            node[part] = dict(node[part])  # a copy: the checkpoint's own dict stays as read
            node = node[part]
        else:
            if isinstance(node, dict):
                node.pop(path[-1], None)
    return kept


def check_classes(checkpoint: Checkpoint, config: Config, path: Path) -> None:
    classes = list(dataset_classes(config))
    if len(checkpoint.class_names) != len(classes):
        raise StplError(
            f"{path} predicts {len(checkpoint.class_names)} classes but dataset '{config.data.dataset}' "
            f"has {len(classes)}"
        )
    if list(checkpoint.class_names) != classes:
        raise StplError(f"{path} predicts classes {checkpoint.class_names}, dataset '{config.data.dataset}' {classes}")


def check_finite_weights(checkpoint: Checkpoint) -> None:
    """Refuse a checkpoint holding NaN or infinite weights (a diverged run's): every prediction would be noise."""
    broken = [
        name for name, value in checkpoint.model.items() if value.is_floating_point() and not value.isfinite().all()
    ]
    if broken:
        where = checkpoint.path or "the checkpoint"
        raise StplError(f"{where} holds non-finite weights ({len(broken)} tensors, e.g. {broken[0]}): not used")


def model_from_checkpoint(checkpoint: Checkpoint, config: Config, skip_adaptation_modules: bool) -> VideoSegmenter:
    """Rebuild the checkpoint's architecture; fusion and projection follow `config` when they are skipped."""
    check_finite_weights(checkpoint)
    if not checkpoint.class_names:
        raise StplError(f"{checkpoint.path or 'the checkpoint'} names no classes: it cannot be a segmentation model")
    model = build_model(len(checkpoint.class_names), **config.model.network_options(load_pretrained=False))
    state = checkpoint.model
    if skip_adaptation_modules:
        own = {k: v for k, v in model.state_dict().items() if k.startswith(ADAPTATION_MODULES)}
        state = {**{k: v for k, v in state.items() if not k.startswith(ADAPTATION_MODULES)}, **own}
    mismatch = state_mismatch(model.state_dict(), state)
    if mismatch:
        raise StplError(f"checkpoint does not fit the model: {mismatch}")
    model.load_state_dict(state)
    return model


# What a checkpoint's own config supplies to a command run without --config: which data it was made for and how it
# is read, and the network (adaptation and evaluation settings stay the defaults unless set). Never where files
# are: LOCAL_PATH_KEYS stay the user's.
CHECKPOINT_SECTIONS = ("data", "flow", "model")


def checkpoint_settings(path: Path) -> dict[str, Any]:
    """The data, flow and model sections of a checkpoint's config, as a base for `build_config` (from the file's
    header alone: no tensor is read)."""
    saved = read_meta(path)["config"]
    settings = without_local_paths({key: saved[key] for key in CHECKPOINT_SECTIONS if key in saved})
    checkpoint_config(settings, path)  # a value of the wrong kind is the file's fault: say which file
    return settings


def checkpoint_config(settings: dict[str, Any], path: Path | None) -> Config:
    """The config a checkpoint's settings build; a setting the schema refuses is one error naming the file."""
    try:
        return build_config(base=settings)
    except StplError as err:
        raise StplError(f"{path or 'the checkpoint'}: its metadata holds a setting stpl refuses: {err}") from None


def model_for_checkpoint(checkpoint: Checkpoint) -> tuple[VideoSegmenter, Config]:
    """The checkpoint's own model in eval mode and its config (prediction needs nothing else)."""
    config = checkpoint_config(without_local_paths(checkpoint.config), checkpoint.path)
    return model_from_checkpoint(checkpoint, config, skip_adaptation_modules=False).eval(), config


def state_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """ "" when `found` fits `expected` name for name and shape for shape; else one line saying how it does not."""

    def examples(names: list[str]) -> str:
        return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")

    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    shapes = [
        f"{name} {list(found[name].shape)} in the file, {list(value.shape)} in the model"
        for name, value in expected.items()
        if name in found and found[name].shape != value.shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensors missing ({examples(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} not in the model ({examples(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape ({examples(shapes)})")
    return "; ".join(parts)


def with_checkpoint_model(config: Config, checkpoint: Checkpoint, architecture_only: bool) -> Config:
    """The user's config with the checkpoint's model settings: its architecture only (adaptation, where the fusion,
    the temporal input and the other adaptation-time options stay the user's), or its whole model section
    (evaluation). Keys newer than the checkpoint keep the user's values."""
    saved = checkpoint.config["model"]
    if architecture_only:
        model = {path[-1]: saved[path[-1]] for path in ARCHITECTURE_KEYS if path[-1] in saved}
        model["pretrained"] = False  # the checkpoint supplies every backbone weight
    else:
        model = saved
    try:
        return with_overrides(config, {"model": model})
    except StplError as err:
        where = checkpoint.path or "the checkpoint"
        raise StplError(f"{where}: its metadata holds a setting stpl refuses: {err}") from None
