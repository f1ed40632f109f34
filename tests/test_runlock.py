"""The per-folder lock: a live holder blocks a second run with a clear error; a dead one's lock is taken over."""

import os
import socket
import subprocess
import sys

import pytest

from stpl.cli import main
from stpl.errors import StplError
from stpl.runlock import LOCK_NAME, run_lock


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(folder, pid, host=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(f"{pid} {host or socket.gethostname()}\n")


def test_lock_is_held_inside_the_block_and_removed_after(tmp_path):
    folder = tmp_path / "run" / "nested"
    with run_lock(folder):
        assert (folder / LOCK_NAME).read_text().split()[0] == str(os.getpid())
        with pytest.raises(StplError, match="in use by process"), run_lock(folder):
            pass
    assert not (folder / LOCK_NAME).exists()


def test_lock_is_removed_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError), run_lock(tmp_path):
        raise RuntimeError("interrupted")
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    write_lock(tmp_path, dead_pid())
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())


@pytest.mark.parametrize("content", ["", "not-a-pid host", "12 other-host-name"])
def test_unreadable_or_foreign_lock_is_not_taken_over(tmp_path, content):
    (tmp_path / LOCK_NAME).write_text(content)
    with pytest.raises(StplError, match="lock file"), run_lock(tmp_path):
        pass
    assert (tmp_path / LOCK_NAME).read_text() == content


def test_adapt_into_a_folder_another_process_is_using_fails_cleanly(tmp_path, toy_settings, capsys):
    settings = [arg for setting in toy_settings for arg in ("--set", setting)]
    source = tmp_path / "source"
    assert main(["train-source", "--out", str(source), *settings]) == 0
    out = tmp_path / "adapted"
    write_lock(out, os.getppid())  # a live process that is not this one
    code = main(["adapt", "--source-ckpt", str(source / "model.safetensors"), "--out", str(out), *settings])
    assert code != 0
    assert "in use by process" in capsys.readouterr().err
    assert sorted(path.name for path in out.iterdir()) == [LOCK_NAME]  # nothing written beside the lock
    (out / LOCK_NAME).unlink()
    assert main(["adapt", "--source-ckpt", str(source / "model.safetensors"), "--out", str(out), *settings]) == 0
    assert (out / "model.safetensors").is_file() and not (out / LOCK_NAME).exists()
