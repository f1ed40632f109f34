"""config_ranges: a field's accepted values written on the field, checked for every field of a config."""

import math

import pytest

from stpl.config import build_config
from stpl.config.ranges import Interval, PositiveList, Range
from stpl.errors import StplError


def test_ranges_by_hand():
    assert Range(low=0, low_open=True).problem(0.0) == "must be positive"
    assert Range(low=0).problem(-1) == "must not be negative" and Range(low=0).problem(0) is None
    assert Range(low=2).problem(1) == "must be at least 2"
    share = Range(0, 1, high_open=True)
    assert share.problem(1.0) == "must be in [0, 1)" and share.problem(0.0) is None
    assert Range(0, 1, low_open=True).problem(0.0) == "must be in (0, 1]"
    assert Range(0, 1).problem(math.nan) == "must be in [0, 1]"  # NaN fails every comparison: refused
    assert Range(0, math.inf, high_open=True).problem(math.inf) == "must be in [0, inf)"
    assert Interval().problem(()) is None and Interval().problem((0.5, 2.0)) is None
    assert Interval().problem((2.0, 0.5)) == "must be [] or [low, high] with 0 < low <= high"
    assert Interval(optional=False).problem(()) == "must be [low, high] with 0 < low <= high"
    assert PositiveList().problem((0.5, 1.0)) is None and PositiveList().problem((0.0,)) is not None


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("adapt.online.frame_statistics=1.5", "'adapt.online.frame_statistics' must be in [0, 1], got 1.5"),
        ("adapt.cotta.scales=[0, 1]", "'adapt.cotta.scales' must list one or more positive numbers"),
        ("adapt.uda.fda_beta=0.5", "'adapt.uda.fda_beta' must be in [0, 0.5), got 0.5"),
        ("data.height=0", "'data.height' must be positive, got 0"),
        ("adapt.online.guard_window=1", "'adapt.online.guard_window' must be at least 2, got 1"),
        ("adapt.lr=nan", "'adapt.lr': expected a finite number"),  # the type check comes first
        ("adapt.uda.rda_semantic_bands=[3, 40]", "'adapt.uda.rda_bands' and 'adapt.uda.rda_semantic_bands'"),
    ],
)
def test_a_value_outside_its_field_rule_names_the_key_and_the_rule(setting, words):
    with pytest.raises(StplError) as raised:
        build_config(sets=[setting])
    assert words in str(raised.value)


def test_the_defaults_keep_every_rule():
    build_config()  # raises on any default outside its own rule
