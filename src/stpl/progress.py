"""Progress lines on stderr: rate, ETA and the latest numbers, at most every few seconds."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class Progress:
    def __init__(self, label: str, total: int, every_seconds: float = 10.0, initial: int = 0, stream=None):
        self.label = label
        self.total = total
        self.every_seconds = every_seconds
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self.last_print = self.started  # quiet for tasks shorter than every_seconds
        self.printed = False
        self.initial = initial  # a resumed task's starting count, so rates cover this session's work only

    def update(self, count: int, extra: str = "", force: bool = False) -> None:
        now = time.perf_counter()
        due = now - self.last_print >= self.every_seconds or (count >= self.total and self.printed)
        if not (force or due):
            return
        self.last_print = now
        self.printed = True
        done_here = count - self.initial
        rate = done_here / max(now - self.started, 1e-9)
        eta = (self.total - count) / rate if rate > 0 else 0.0
        line = f"[{self.label}] {count}/{self.total} {rate:.2f}/s ETA {format_duration(eta)}"
        print(f"{line} {extra}".rstrip(), file=self.stream, flush=True)

    def done(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"[{self.label}] done in {format_duration(elapsed)}: {message}", file=self.stream, flush=True)
