"""Run folders and run identities: what a run's result depends on, whether a folder holds a finished run of it,
and the folder's lifetime (lock, config.yaml, cleanup of a run refused before it started). Every command that
trains writes through these, so a folder is never overwritten by a run of another config."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stpl.atomic import remove_temporaries, write_text
from stpl.config import Config, config_to_dict, config_to_yaml, marked_keys
from stpl.engine import distributed
from stpl.engine.checkpoint import file_sha1, read_meta
from stpl.engine.run_files import CONFIG_FILE, FINAL_CHECKPOINT, LAST_CHECKPOINT, METRICS_FILE, SNAPSHOT_DIR
from stpl.errors import StplError
from stpl.runlock import LOCK_NAME, run_lock

# Settings that change where or how fast a run goes, or what it prints, but not what it computes.
NON_RESULT_KEYS = marked_keys("result", False)


# Keys that only choose the target frames (adaptation, evaluation, the oracle's labels): source training does not
# read them, so protocols over one source set (camvid-15hz-night and -adverse) share their source models.
TARGET_ONLY_KEYS = marked_keys("target_only")


def _drop_keys(identity: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> None:
    for path in paths:
        node = identity
        for part in path[:-1]:
            node = node.get(part, {})
        node.pop(path[-1], None)


def run_identity(config: Config, source_checkpoint: Path | None = None) -> dict[str, Any]:
    """What determines a run's result: its config less NON_RESULT_KEYS, and the starting checkpoint's bytes."""
    identity = config_to_dict(config)
    _drop_keys(identity, NON_RESULT_KEYS)
    if source_checkpoint is not None:
        identity["source_checkpoint_sha1"] = file_sha1(source_checkpoint)
    return identity


# What supervised training (the source model, the oracle) reads from the config: adaptation and evaluation
# settings do not change it, so changing them must not make a finished source model look like another run.
SUPERVISED_SECTIONS = ("seed", "data", "flow", "model", "train")


def supervised_identity(config: Config, split: str) -> dict[str, Any]:
    """`run_identity` restricted to the sections supervised training on `split` depends on."""
    identity = {key: value for key, value in run_identity(config).items() if key in SUPERVISED_SECTIONS}
    if split == "source":
        _drop_keys(identity, TARGET_ONLY_KEYS)
    return identity


def check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise StplError(f"--out {out_dir} exists and is not a folder")


_MISSING = object()
_DEFAULTS = config_to_dict(Config())
_TARGET_ONLY = {".".join(path) for path in TARGET_ONLY_KEYS}
_NOT_RESULTS = {".".join(path) for path in NON_RESULT_KEYS}


def _default_at(dotted: str) -> Any:
    node: Any = _DEFAULTS
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def differing_keys(stored: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between a stored run identity and the current one. A key the stored one
    lacks counts as its default (config keys added since that run was made), and a target-only key only one side
    holds does not count (source identities dropped them later), nor does a key only the stored one holds that is
    no longer part of an identity (declared not a result since): older run folders stay usable."""
    keys = []
    for key in sorted(set(stored) | set(current)):
        dotted = f"{prefix}{key}"
        a, b = stored.get(key, _MISSING), current.get(key, _MISSING)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += differing_keys(a, b, f"{dotted}.")
        elif (
            (a is _MISSING and b == _default_at(dotted))
            or ((a is _MISSING or b is _MISSING) and dotted in _TARGET_ONLY)
            or (b is _MISSING and dotted in _NOT_RESULTS)
        ):
            continue
        elif a != b:
            keys.append(dotted)
    return keys


def same_identity(stored: dict[str, Any] | None, current: dict[str, Any]) -> bool:
    return stored is not None and not differing_keys(stored, current)


def prepare_run_dir(out_dir: Path, config: Config, identity: dict[str, Any]) -> None:
    """Create the folder; refuse one that holds a run of another identity (never overwrite it). Rank 0 decides
    and every process gets its answer, so that with torchrun all of them stop with the same message (the others
    would otherwise wait at their first collective for as long as the timeout)."""
    if not distributed.is_main():
        _refused_by_main(distributed.from_main(None))
        return
    try:
        _check_run_dir(out_dir, identity)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / CONFIG_FILE, config_to_yaml(config))
    except Exception as error:
        distributed.from_main(str(error))  # the others stop too, with this message
        raise
    distributed.from_main(None)


def _refused_by_main(refusal: str | None) -> None:
    if refusal is not None:
        raise StplError(f"rank 0 refused: {refusal}")


def _check_run_dir(out_dir: Path, identity: dict[str, Any]) -> None:
    check_out_dir(out_dir)
    for name in (LAST_CHECKPOINT, FINAL_CHECKPOINT):
        existing = out_dir / name
        held = read_meta(existing).get("identity") if existing.is_file() else identity
        if not same_identity(held, identity):
            differ = differing_keys(held or {}, identity)
            shown = ", ".join(differ[:6]) + (", ..." if len(differ) > 6 else "")
            raise StplError(
                f"{out_dir} holds a run of another config or source model (differs in {shown}); choose another "
                "--out or remove it"
            )


@contextmanager
def run_folder(out_dir: Path) -> Iterator[None]:
    """Hold the folder's lock; a run refused before training started (bad weights file, a checkpoint that does not
    fit) leaves no folder or config.yaml behind it. Once training has started its logs and checkpoints stay.
    With several processes (torchrun) rank 0 alone holds the folder; the others only read from it."""
    if not distributed.is_main():
        _refused_by_main(distributed.from_main(None))  # whether rank 0 got the lock
        yield
        return
    created = not out_dir.exists()
    try:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(run_lock(out_dir))
            except Exception as error:
                distributed.from_main(str(error))
                raise
            distributed.from_main(None)
            for folder in (out_dir, out_dir / SNAPSHOT_DIR):  # what a killed run left half-written
                remove_temporaries(folder)
            fresh = not any(path.name != LOCK_NAME for path in out_dir.iterdir())
            try:
                yield
            except StplError:
                if fresh and not (out_dir / METRICS_FILE).exists():
                    (out_dir / CONFIG_FILE).unlink(missing_ok=True)
                raise
    except StplError:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise


def finished(out_dir: Path, identity: dict[str, Any]) -> bool:
    path = out_dir / FINAL_CHECKPOINT
    return path.is_file() and same_identity(read_meta(path).get("identity"), identity)
