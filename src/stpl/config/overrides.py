"""Typed overrides onto a tree of config dataclasses: YAML files and ``--set key=value`` texts, checked field by field.

Knows nothing of stpl's schema (config.py): any nested dataclass works. Every value is converted to its field's
type or refused with a message naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from stpl.errors import StplError, file_error


def _number_from_text(text: str, key: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise StplError(f"config key '{key}': expected a number, got {text!r}") from None


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Return `value` converted to the field type `annotation`, or raise naming `key`."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if isinstance(value, bool):  # YAML 1.1 reads off/on/no/yes as booleans: give back the choice that was meant
            meant = [c for c in choices if isinstance(c, str) and yaml.safe_load(c) is value]
            value = meant[0] if len(meant) == 1 else value
        if value not in choices:
            raise StplError(f"config key '{key}': {value!r} is not one of {list(choices)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise StplError(f"config key '{key}': expected a list, got {value!r}")
        (item_type, *_) = typing.get_args(annotation)
        return tuple(_coerce(v, item_type, key) for v in value)
    if origin in (types.UnionType, typing.Union):
        raise StplError(f"config key '{key}': union types are not supported in the schema")
    if annotation is bool:
        if not isinstance(value, bool):
            raise StplError(f"config key '{key}': expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise StplError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 and 1e30 (no dot) as strings
            value = _number_from_text(value, key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise StplError(f"config key '{key}': expected a number, got {value!r}")
        if not math.isfinite(value):
            raise StplError(f"config key '{key}': expected a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise StplError(f"config key '{key}': expected a string, got {value!r}")
        return value
    raise StplError(f"config key '{key}': unsupported schema type {annotation!r}")


def apply_overrides(node: Any, overrides: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(node))
    for name, value in overrides.items():
        key = f"{prefix}{name}"
        if name not in hints:
            known = ", ".join(sorted(hints))
            raise StplError(f"unknown config key '{key}' (known here: {known})")
        current = getattr(node, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise StplError(f"config key '{key}': expected a mapping of sub-keys, got {value!r}")
            apply_overrides(current, value, prefix=f"{key}.")
        else:
            setattr(node, name, _coerce(value, hints[name], key))


def nest_key(dotted: str, value: Any) -> dict[str, Any]:
    """ "adapt.lr", 1e-3 -> {"adapt": {"lr": 1e-3}} (a nested override for `with_overrides`)."""
    out: dict[str, Any] = {}
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def parse_set_option(text: str) -> dict[str, Any]:
    """Turn one ``--set a.b=value`` into a nested dict; the value is parsed as YAML (so 0.1, true, [1,2])."""
    if "=" not in text:
        raise StplError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise StplError(f"--set has an empty key in '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise StplError(f"--set {key}: cannot parse value '{raw}': {err}") from None
    return nest_key(key, value)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "config file")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise StplError(f"cannot read config file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise StplError(f"config file {path} is not UTF-8 text (byte {err.start}): is it a YAML file?") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise StplError(f"config file {path} is not valid YAML: {yaml_error_line(err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StplError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    duplicate = first_duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader))
    if duplicate is not None:  # YAML keeps the last value silently; which one the user meant is unknown
        key, line = duplicate
        raise StplError(f"config file {path}: key '{key}' appears twice in one mapping (again at line {line})")
    return data


def first_duplicate_key(node: yaml.Node | None, prefix: str = "") -> tuple[str, int] | None:
    """The first key given twice in one mapping of a composed YAML document (dotted, as --set names it), with the
    1-based line of its second appearance; None when every mapping's keys differ."""
    children: list[tuple[str, yaml.Node]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = f"{prefix}{key.value}"
            if name in seen:
                return name, key.start_mark.line + 1
            seen.add(name)
            children.append((f"{name}.", value))
    elif isinstance(node, yaml.SequenceNode):
        children = [(prefix, item) for item in node.value]
    for child_prefix, child in children:
        found = first_duplicate_key(child, child_prefix)
        if found is not None:
            return found
    return None


def yaml_error_line(err: yaml.YAMLError) -> str:
    """PyYAML's several-line report as one line: what is wrong and where (1-based line and column)."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(err, "context", None)
    return f"{problem}{where}" + (f" ({context})" if context else "")


def merged_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        both_sections = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merged_overrides(merged[key], value) if both_sections else value
    return merged
