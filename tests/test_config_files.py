"""Packaged configs by name, data paths relative to their config file, STPL_DATA, and the installed wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

from stpl.cli import main
from stpl.config import build_config
from stpl.config.files import packaged_configs
from stpl.errors import StplError

REPO = Path(__file__).resolve().parents[1]


def test_packaged_configs_are_named_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    assert {"toy", "camvid-dusk", "camvid-15hz-night", "recipes/camvid-source-holdout"} <= set(packaged_configs())
    assert build_config("toy").train.iterations == 20
    assert build_config("camvid-dusk").data.camvid.target_sequence == "0001TP"
    assert build_config("camvid_15hz_night").data.camvid.target_corruption == "night"
    assert main(["show-config", "--config", "toy"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["model"]["backbone"] == "tiny"


def test_a_file_path_wins_and_an_unknown_name_lists_the_packaged_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("toy").write_text("train:\n  iterations: 7\n")  # a file named like a packaged config
    assert build_config("toy").train.iterations == 7
    with pytest.raises(StplError, match=r"config file not found: camvid-dawn \(a YAML file, or a packaged config: "):
        build_config("camvid-dawn")


def test_relative_data_paths_in_ones_own_config_follow_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "my.yaml").write_text("data:\n  camvid:\n    root: data/camvid\n  frames:\n    path: clip.mp4\n")
    monkeypatch.chdir(tmp_path)
    config = build_config("project/my.yaml")
    assert config.data.camvid.root == str(folder / "data" / "camvid")
    assert config.data.frames.path == str(folder / "clip.mp4")
    absolute = tmp_path / "elsewhere"
    (folder / "abs.yaml").write_text(f"data:\n  camvid:\n    root: {absolute}\n")
    assert build_config(folder / "abs.yaml").data.camvid.root == str(absolute)


def test_stpl_data_places_the_data_sets_and_set_beats_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STPL_DATA", str(tmp_path / "datasets"))
    assert main(["show-config", "--config", "camvid-dusk"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)["data"]
    assert shown["camvid"]["root"] == str(tmp_path / "datasets" / "camvid")
    assert shown["cityscapes_seq"]["root"] == str(tmp_path / "datasets" / "Cityscapes")
    assert main(["show-config", "--config", "camvid-dusk", "--set", "data.camvid.root=/mine"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["camvid"]["root"] == "/mine"


def test_a_missing_camvid_says_where_to_get_it_and_what_to_set(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", "--benchmark", "camvid-dusk", "--data-root", str(tmp_path / "nowhere"), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "CamVid folder not found" in err and "--data-root" in err and "STPL_DATA" in err and "SegNet" in err


@pytest.mark.skipif(not (REPO / "pyproject.toml").is_file(), reason="needs the checkout to build the wheel")
def test_the_built_wheel_runs_outside_the_checkout(tmp_path):
    """The wheel, installed into a new environment (its dependencies shared from this one, nothing fetched),
    shows a packaged config and runs a two-step bench from a folder that is not the checkout."""
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)]
    subprocess.run([*build, str(REPO)], check=True, capture_output=True)
    (wheel,) = wheels.glob("stpl-*.whl")
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    ours = [p for p in sys.path if p.endswith("site-packages")]
    (site / "shared_dependencies.pth").write_text("\n".join(ours) + "\n")  # numpy, torch, ... of this environment
    python = env_dir / "bin" / "python"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True)
    outside = tmp_path / "somewhere"
    outside.mkdir()
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STPL_DATA")}

    def stpl(*args: str) -> subprocess.CompletedProcess:
        command = [str(python), "-c", "import sys; from stpl.cli import main; sys.exit(main())", *args]
        return subprocess.run(command, cwd=outside, env=environment, capture_output=True, text=True)

    where = stpl("--version")
    assert where.returncode == 0, where.stderr
    located = subprocess.run([str(python), "-c", "import stpl; print(stpl.__file__)"], cwd=outside, env=environment,
                             capture_output=True, text=True)  # fmt: skip
    assert located.stdout.startswith(str(site)), located.stdout  # the wheel's copy, not the checkout's
    shown = stpl("show-config", "--config", "toy")
    assert shown.returncode == 0 and yaml.safe_load(shown.stdout)["model"]["backbone"] == "tiny", shown.stderr
    toy = ["--config", "toy", "--set", "train.iterations=2", "--set", "adapt.iterations=2"]
    toy += ["--set", f"flow.cache_dir={tmp_path / 'flow'}", "--set", "data.synthetic.source_clips=2"]
    toy += ["--set", "data.synthetic.adapt_clips=2", "--set", "data.synthetic.eval_clips=2"]
    bench = stpl("bench", "--benchmark", "synthetic", "--methods", "source-only,tent", "--out", "b", *toy)
    assert bench.returncode == 0, bench.stderr[-2000:]
    assert "| tent |" in (outside / "b" / "results.md").read_text()
