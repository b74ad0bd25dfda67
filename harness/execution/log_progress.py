"""Progress for a log rather than a terminal: when bench's output is piped (a CI job's log), a
progress bar would be one line redrawn in place, which a log shows only at the end, if at all.
Instead a line is printed for every finished run, with how many are done and the time left, and
a line every ``every`` seconds while a run goes on without one, so that a log is never silent
for long (one 30-epoch run can take minutes).

:class:`LogBar` takes the place of the ``tqdm`` bar in :func:`harness.execution.scheduler.run_all`:
it has the three methods the scheduler and runner call (``update``, ``set_postfix_str`` and
``close``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

EVERY = 30.0  # seconds a log may stay silent while a run goes on


class LogBar:
    """Lines of progress; ``postfix`` is what the runner last said (a run's name and epoch)."""

    def __init__(
        self,
        total: int,
        desc: str | None,
        *,
        stream: TextIO | None = None,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
        heartbeat: bool = True,
    ):
        self.total, self.desc, self.done, self.postfix = total, desc or "runs", 0, ""
        self.stream = stream or sys.stderr
        self.every, self.clock = every, clock
        self.started = self.last_line = clock()
        self.lock = threading.Lock()
        self.closed = threading.Event()
        if heartbeat and total:
            threading.Thread(target=self._beat, name="bench progress", daemon=True).start()

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        """``n`` more runs finished: one line with the count, the last news and the time left."""
        self.done += n
        elapsed = self.clock() - self.started
        left = elapsed / self.done * (self.total - self.done) if self.done else None
        when = f"{duration(elapsed)} elapsed" + (f", about {duration(left)} left" if left else "")
        self._line(f"{self._count()} {self.postfix}; {when}")

    def tick(self) -> None:
        """A line if none was printed for ``every`` seconds: what is still running."""
        now = self.clock()
        if now - self.last_line >= self.every:
            running = f"still running {self.postfix}" if self.postfix else "still running"
            self._line(f"{self._count()} {running}; {duration(now - self.started)} elapsed")

    def close(self) -> None:
        self.closed.set()

    def __enter__(self) -> LogBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self) -> str:
        return f"{self.desc} [{self.done}/{self.total}]"

    def _line(self, text: str) -> None:
        with self.lock:
            print(text, file=self.stream, flush=True)
            self.last_line = self.clock()

    def _beat(self) -> None:
        while not self.closed.wait(self.every / 6):
            self.tick()


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 2 min``: as a person reads a time in a log."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
