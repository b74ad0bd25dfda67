"""``bench`` that is sure to be in the middle of a run when the interrupt test's signal comes.

Run as ``python held_bench.py ARGS...`` with ``BENCH_TEST_HOLD=N:FLAG``: the Nth training epoch
of the process (counted over all runs) creates the file FLAG and waits there until a signal
stops the suite. The test sends its signal once FLAG exists, so the signal lands mid-run at a
known point however fast or loaded the machine is; nothing computed differs from plain ``bench``.
"""

import os
import signal
import time
from pathlib import Path

import harness.training.loop
from harness.cli import main


def hold_at(epoch: int, flag: Path) -> None:
    """Make the ``epoch``-th call of ``train_epoch`` announce itself in ``flag`` and wait."""
    real = harness.training.loop.train_epoch
    calls = 0

    def train_epoch(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == epoch:
            flag.touch()
            while True:  # until SIGINT or SIGTERM stops the suite
                time.sleep(0.01)
        return real(*args, **kwargs)

    harness.training.loop.train_epoch = train_epoch


if __name__ == "__main__":
    # A shell's background job inherits SIGINT ignored; the test means Ctrl-C, so take it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    epoch, _, flag = os.environ["BENCH_TEST_HOLD"].partition(":")
    hold_at(int(epoch), Path(flag))
    main()
