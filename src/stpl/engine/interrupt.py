"""Stopping a training run on request without losing its work.

Inside the loop, SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop, `kill`) do not stop the process at once: the
current step finishes, the loop writes a checkpoint and then raises `Interrupted`, so the same command resumes at
exactly that step. A second signal a second or more later stops at once (the checkpoint on disk is then the last
one written); one sooner is taken as the same request passed on by a supervisor (`timeout`, Slurm, torchrun).
Elsewhere, `terminate_as_interrupt` makes SIGTERM unwind like Ctrl-C, so `finally` blocks still clean up.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from stpl.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(number: int) -> str:
    return "Ctrl-C" if number == signal.SIGINT else signal.Signals(number).name


def _raise_interrupted(number: int, frame: FrameType | None) -> None:
    raise Interrupted(f"stopped by {signal_name(number)}", 128 + number)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `Interrupted` (exit 143) in the main thread while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:  # started to ignore it (nohup, a scheduler): keep so
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopRequests:
    """While entered, SIGINT and SIGTERM are recorded in `received` instead of stopping the process; the loop
    polls it between steps. The handlers are only installed in the main thread (Python's rule), and not for a
    signal the process was started to ignore (`nohup`, `&` in a script)."""

    REPEAT_SECONDS = 1.0  # a second signal sooner than this is the same request passed on (timeout, Slurm)

    def __init__(self) -> None:
        self.received: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, object] = {}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received, self._first_at = number, time.monotonic()
        elif time.monotonic() - self._first_at >= self.REPEAT_SECONDS:  # asked again: stop now
            _raise_interrupted(number, frame)

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {
                number: signal.signal(number, self._handle)
                for number in SIGNALS
                if signal.getsignal(number) is not signal.SIG_IGN  # a process told to ignore it (nohup) still does
            }
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}
