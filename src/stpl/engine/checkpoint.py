"""Checkpoints: tensors in one safetensors file, everything else as JSON in its metadata. Never unpickles.

Sections are key prefixes: "model." (the segmenter), "optimizer." (for resuming), "extra." (method state, e.g.
an EMA teacher). The metadata holds the resolved config, class names, step, kind and library versions. Writes go
to a temporary file in the same folder and are renamed into place, so a crash leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from stpl.atomic import atomic_write
from stpl.errors import StplError
from stpl.version import __version__

METADATA_KEY = "stpl"


@dataclass
class Checkpoint:
    model: dict[str, Tensor]
    meta: dict[str, Any]
    optimizer: dict[str, Any] | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)
    path: Path | None = None  # the file it was read from, for messages

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]

    @property
    def class_names(self) -> list[str]:
        return self.meta["class_names"]

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))


def versions() -> dict[str, str]:
    return {"stpl": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, param_state in state["state"].items():
        for name, value in param_state.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"scalars": scalars, "param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, Tensor], info: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, _, index, name = key.split(".", 3)
        state.setdefault(int(index), {})[name] = value
    for key, value in info["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": info["param_groups"]}


def save_checkpoint(
    path: str | Path,
    model_state: dict[str, Tensor],
    meta: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
    extra: dict[str, Tensor] | None = None,
) -> None:
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model_state.items()}
    meta = {**meta, "versions": versions()}
    if optimizer_state is not None:
        optimizer_tensors, meta["optimizer"] = _flatten_optimizer(optimizer_state)
        tensors.update(optimizer_tensors)
    for key, value in (extra or {}).items():
        tensors[f"extra.{key}"] = value.detach().cpu().contiguous()
    # save_file is looked up at call time so tests can simulate a crash mid-write.
    atomic_write(path, lambda temporary: save_file(tensors, temporary, metadata={METADATA_KEY: json.dumps(meta)}))


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata alone (no tensors are read)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as reader:
            metadata = reader.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise StplError(f"{path} is not a readable safetensors checkpoint: {err}") from None
    return parse_meta(metadata, path)


def parse_meta(metadata: dict[str, str], path: Path) -> dict[str, Any]:
    """The stpl metadata of a safetensors header, checked for what every command reads from it: one StplError
    naming the file if it is missing, not JSON, or holds fields of the wrong kind."""
    if METADATA_KEY not in metadata:
        raise StplError(f"{path} is not an stpl checkpoint (no '{METADATA_KEY}' metadata)")
    try:
        meta = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise StplError(f"{path}: its stpl metadata is not valid JSON ({err})") from None
    except RecursionError:  # the decoder recurses once per level of nesting
        raise StplError(f"{path}: its stpl metadata is nested too deep to be a checkpoint's") from None
    problem = meta_problem(meta)
    if problem:
        raise StplError(f"{path}: damaged checkpoint metadata: {problem}")
    return meta


def meta_problem(meta: Any) -> str:
    """ "" when checkpoint metadata has the fields commands rely on, of the right kinds; else what is wrong."""
    if not isinstance(meta, dict):
        return f"expected a JSON object, found {type(meta).__name__}"
    config = meta.get("config")
    if not isinstance(config, dict):
        return "'config' is missing or not an object"
    for section in ("data", "model"):
        if not isinstance(config.get(section, {}), dict):
            return f"'config.{section}' is not an object"
    names = meta.get("class_names")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return "'class_names' is missing or not a list of names"
    palette = meta.get("palette")
    if palette is not None and not _is_palette(palette, len(names)):
        return f"'palette' must hold one [r, g, b] colour (0..255) for each of the {len(names)} classes"
    step = meta.get("step", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"'step' must be a non-negative integer, found {step!r}"
    return ""


def _is_palette(palette: Any, classes: int) -> bool:
    def colour(value: Any) -> bool:
        return (
            isinstance(value, list)
            and len(value) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
        )

    return isinstance(palette, list) and len(palette) == classes and all(colour(value) for value in palette)


def file_sha1(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise StplError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as reader:
            metadata = reader.metadata() or {}
            tensors = {key: reader.get_tensor(key) for key in reader.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as err:
        raise StplError(f"{path} is not a readable safetensors checkpoint: {err}") from None
    meta = parse_meta(metadata, path)
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
    optimizer = None
    if "optimizer" in meta:
        optimizer_tensors = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
        optimizer = _unflatten_optimizer(optimizer_tensors, meta.pop("optimizer"))
    return Checkpoint(model=model, meta=meta, optimizer=optimizer, extra=extra, path=path)
