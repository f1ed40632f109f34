"""What values one config field accepts beyond its type, written on the field itself as dataclass metadata:

    lr: float = field(default=0.01, metadata=positive())
    threshold: float = field(default=0.9, metadata=between(0, 1))

`field_problems` walks a config and names every field whose value its rule refuses; checks that span several
fields stay in checks.validate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

RULE = "rule"  # the metadata key a field's rule is kept under


@dataclass(frozen=True)
class Range:
    """A number from `low` to `high` (either may be None: unbounded), each end open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def accepts(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        if self.high is None and self.low == 0:
            return "must be positive" if self.low_open else "must not be negative"
        if self.high is None and not self.low_open:
            return f"must be at least {self.low:g}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"must be in {left}{low}, {high}{right}"

    def problem(self, value: Any) -> str | None:
        return None if self.accepts(value) else self.describe()


@dataclass(frozen=True)
class Interval:
    """A pair [low, high] with 0 < low <= high, or (when `optional`) the empty list: off."""

    optional: bool = True

    def problem(self, value: Any) -> str | None:
        if self.optional and len(value) == 0:
            return None
        if len(value) == 2 and 0.0 < value[0] <= value[1]:
            return None
        return ("must be [] or " if self.optional else "must be ") + "[low, high] with 0 < low <= high"


@dataclass(frozen=True)
class PositiveList:
    """One or more numbers, each above 0."""

    def problem(self, value: Any) -> str | None:
        return None if value and min(value) > 0 else "must list one or more positive numbers"


def positive() -> dict[str, Any]:
    return {RULE: Range(low=0, low_open=True)}


def not_negative() -> dict[str, Any]:
    return {RULE: Range(low=0)}


def at_least(low: float) -> dict[str, Any]:
    return {RULE: Range(low=low)}


def between(low: float, high: float, low_open: bool = False, high_open: bool = False) -> dict[str, Any]:
    return {RULE: Range(low, high, low_open, high_open)}


def interval(optional: bool = True) -> dict[str, Any]:
    return {RULE: Interval(optional)}


def positive_list() -> dict[str, Any]:
    return {RULE: PositiveList()}


def field_problems(node: Any, prefix: str = "") -> Iterator[str]:
    """'config key K ...' for every field of the dataclass tree `node` whose value its rule refuses."""
    for spec in dataclasses.fields(node):
        value = getattr(node, spec.name)
        key = f"{prefix}{spec.name}"
        if dataclasses.is_dataclass(value):
            yield from field_problems(value, f"{key}.")
            continue
        rule = spec.metadata.get(RULE)
        problem = rule.problem(value) if rule is not None else None
        if problem is not None:
            yield f"config key '{key}' {problem}, got {value!r}"
