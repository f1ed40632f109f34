"""The per-folder lock: a live holder blocks a second run with a clear error; a dead one's lock is taken over."""

import contextlib
import os
import socket
import subprocess
import sys
import time

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


def test_lock_file_without_a_holder_is_taken_over(tmp_path):
    write_lock(tmp_path, dead_pid())  # left by a process that died: the kernel dropped its lock
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    (tmp_path / LOCK_NAME).write_text("not-a-pid here")
    with run_lock(tmp_path):
        pass


def test_lock_file_from_another_host_is_left_alone(tmp_path):
    (tmp_path / LOCK_NAME).write_text("12 other-host-name")
    with pytest.raises(StplError, match="on host other-host-name"), run_lock(tmp_path):
        pass
    assert (tmp_path / LOCK_NAME).read_text() == "12 other-host-name"


HOLDER = """
import sys, time
from stpl.runlock import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


@contextlib.contextmanager
def held_by_another_process(folder):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_a_live_holder_blocks_and_its_death_releases(tmp_path):
    with (
        held_by_another_process(tmp_path) as pid,
        pytest.raises(StplError, match=f"in use by process {pid}"),
        run_lock(tmp_path),
    ):
        pass
    with run_lock(tmp_path):  # killed: the kernel released its lock, its file is taken over
        pass


TRY_LOCK = """
import sys, time
from stpl.errors import StplError
from stpl.runlock import run_lock
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
try:
    with run_lock(sys.argv[1]):
        time.sleep(1.0)
        print("won", flush=True)
except StplError:
    print("lost", flush=True)
"""


def test_processes_racing_for_a_stale_lock_get_it_once(tmp_path):
    """Six processes enter the lock function at the same instant over a dead process's lock file: one wins."""
    write_lock(tmp_path, dead_pid())
    start = time.time() + 2.0
    racers = [
        subprocess.Popen([sys.executable, "-c", TRY_LOCK, str(tmp_path), str(start)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    outcomes = sorted(racer.communicate(timeout=60)[0].strip() for racer in racers)
    assert outcomes == ["lost"] * 5 + ["won"]


def test_adapt_into_a_folder_another_process_is_using_fails_cleanly(tmp_path, toy_settings, capsys):
    settings = [arg for setting in toy_settings for arg in ("--set", setting)]
    source = tmp_path / "source"
    assert main(["train-source", "--out", str(source), *settings]) == 0
    out = tmp_path / "adapted"
    with held_by_another_process(out):
        code = main(["adapt", "--source-ckpt", str(source / "model.safetensors"), "--out", str(out), *settings])
        assert code == 2
        assert "in use by process" in capsys.readouterr().err
        assert sorted(path.name for path in out.iterdir()) == [LOCK_NAME]  # nothing written beside the lock
    assert main(["adapt", "--source-ckpt", str(source / "model.safetensors"), "--out", str(out), *settings]) == 0
    assert (out / "model.safetensors").is_file() and not (out / LOCK_NAME).exists()
