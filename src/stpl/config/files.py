"""Where config files and data sets are found: packaged configs by name, data paths relative to their file, and
the STPL_DATA folder.

- `--config toy` or `--config camvid-dusk` names a config shipped inside the package (src/stpl/configs/: `toy.yaml`,
  `camvid_dusk/base.yaml`, ...); a path to a YAML file always wins over a name.
- A relative data path in one's own config file (`data.<set>.root`, `data.<set>.flow_dir*`, `data.frames.path`)
  is read relative to that file's folder, so the config works from any working directory. Packaged configs name
  no data roots; the few placeholder paths they hold (the peers' flow folders) stay relative to the working
  directory.
- STPL_DATA=DIR, when set, places every data set in its folder under DIR (DIR/camvid, DIR/Cityscapes, ...); it
  beats the roots of config files and is beaten by `--data-root` and `--set`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from stpl.config.overrides import load_yaml
from stpl.errors import file_error

DATA_ENV = "STPL_DATA"
# each data set's folder under STPL_DATA (the names the data sets' own downloads use)
DATA_FOLDERS = {
    "camvid": "camvid",
    "cityscapes_seq": "Cityscapes",
    "viper": "Viper",
    "synthia_seq": "SynthiaSeq/SEQS-04-DAWN",
}


def packaged_config_dir() -> Path:
    return Path(str(resources.files("stpl") / "configs"))


def packaged_configs() -> dict[str, Path]:
    """name -> file: `toy` for toy.yaml, `camvid-dusk` for camvid_dusk/base.yaml, `recipes/camvid-source-holdout`."""
    root = packaged_config_dir()
    names = {}
    for path in sorted(root.rglob("*.yaml")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "base":
            parts = parts[:-1]
        names["/".join(part.replace("_", "-") for part in parts)] = path
    return names


def resolve_config_file(config: str | Path) -> Path:
    """A YAML file's path: `config` itself when it is a file, else the packaged config it names."""
    path = Path(config).expanduser()
    if path.is_file():
        return path
    packaged = packaged_configs()
    name = str(config).replace("_", "-").removesuffix(".yaml")
    if name in packaged:
        return packaged[name]
    raise file_error(path, "config file", f"a YAML file, or a packaged config: {', '.join(packaged)}")


def load_config_file(config: str | Path) -> dict[str, Any]:
    """The overrides a config file holds, its relative data paths joined to its folder unless it is packaged."""
    path = resolve_config_file(config)
    overrides = load_yaml(path)
    if packaged_config_dir().resolve() in path.resolve().parents:
        return overrides
    return with_paths_relative_to(overrides, path.resolve().parent)


def is_data_path(section: str, key: str) -> bool:
    return key == "root" or key.startswith("flow_dir") or (section == "frames" and key == "path")


def with_paths_relative_to(overrides: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`overrides` (a config file's contents) with each relative data path joined to `folder`."""
    data = overrides.get("data")
    if not isinstance(data, dict):
        return overrides
    resolved = dict(data)
    for section, values in data.items():
        if not isinstance(values, dict):
            continue
        resolved[section] = {
            key: str(folder / value)
            if is_data_path(section, key) and isinstance(value, str) and value and not Path(value).is_absolute()
            else value
            for key, value in values.items()
        }
    return {**overrides, "data": resolved}


def environment_sets() -> list[str]:
    """`--set` texts placing every data set under STPL_DATA (none when it is unset or empty)."""
    folder = os.environ.get(DATA_ENV, "")
    if not folder:
        return []
    return [f"data.{name}.root={Path(folder).expanduser() / sub}" for name, sub in DATA_FOLDERS.items()]
