import pytest

from stpl.config import Config, build_config, config_to_dict, config_to_yaml
from stpl.config.files import with_paths_relative_to
from stpl.config.overrides import parse_set_option
from stpl.errors import StplError


def test_defaults_and_overrides_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("adapt:\n  temperature: 0.2\n  loss_form: infonce\nmodel:\n  aspp_rates: [1, 2]\n")
    config = build_config(path, ["adapt.temperature=0.05", "data.height=33"])
    # float ==: YAML and Python both round the decimal 0.05 to the nearest double, so the two are the same number
    assert config.adapt.temperature == 0.05  # --set wins over the file
    assert config.adapt.loss_form == "infonce"
    assert config.model.aspp_rates == (1, 2)
    assert config.data.height == 33
    assert config.data.width == Config().data.width


def test_ints_are_accepted_for_floats():
    assert build_config(sets=["adapt.lr=1"]).adapt.lr == 1.0
    assert isinstance(build_config(sets=["adapt.lr=1"]).adapt.lr, float)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("adapt.temprature=0.1", "unknown config key 'adapt.temprature'"),
        ("nonsense=1", "unknown config key 'nonsense'"),
        ("adapt.temperature=warm", "config key 'adapt.temperature': expected a number"),
        ("train.iterations=1.5", "config key 'train.iterations': expected an integer"),
        ("adapt.cross_frame_keys=3", "config key 'adapt.cross_frame_keys': expected true/false"),
        ("model.fusion=multiply", "config key 'model.fusion'"),
        ("adapt.temperature=-1", "'adapt.temperature' must be positive"),
        ("adapt", "--set expects key=value"),
        ("adapt=3", "config key 'adapt': expected a mapping"),
    ],
)
def test_bad_settings_name_the_key(setting, message):
    with pytest.raises(StplError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_config(sets=[setting])


def test_bad_files(tmp_path):
    with pytest.raises(StplError, match="config file not found"):
        build_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("adapt: [unclosed\n")
    with pytest.raises(StplError, match="not valid YAML"):
        build_config(broken)
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  backbon: tiny\n")
    with pytest.raises(StplError, match=r"unknown config key 'model\.backbon'"):
        build_config(typo)


def test_round_trip_through_dict_and_yaml(tmp_path):
    config = build_config(sets=["model.aspp_rates=[3]", "adapt.teacher=source"])
    assert build_config(base=config_to_dict(config)) == config
    path = tmp_path / "resolved.yaml"
    path.write_text(config_to_yaml(config))
    # a config file's relative data paths (the default roots) are read relative to its folder (config_files.py)
    assert build_config(path) == build_config(base=with_paths_relative_to(config_to_dict(config), tmp_path))
    assert build_config(path).data.camvid.root == str(tmp_path / config.data.camvid.root)


def test_set_values_are_parsed_as_yaml():
    assert parse_set_option("a.b=[1, 2]") == {"a": {"b": [1, 2]}}
    assert parse_set_option("a=true") == {"a": True}
    assert parse_set_option("a=path/to/x") == {"a": "path/to/x"}


def test_a_choice_that_yaml_reads_as_a_boolean_is_the_choice(tmp_path):
    """YAML 1.1 reads `off` as false: `--set adapt.amp=off` and `amp: off` in a file still mean the choice "off"."""
    assert build_config(sets=["adapt.amp=bf16", "adapt.amp=off"]).adapt.amp == "off"
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  amp: off\n")
    assert build_config(path).train.amp == "off"
    with pytest.raises(StplError, match="not one of"):
        build_config(sets=["adapt.amp=true"])
