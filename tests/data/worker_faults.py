"""Models whose worker goes away once, and an executor of a plugin's own; loaded with
``--plugin`` by tests/test_executors.py.

``dies-once`` kills its own process in its first training step the first time it runs (the
``marker`` file it creates says it has); ``waits-once`` writes its process id into ``marker`` and
waits to be killed or interrupted, the first time. Run again with the marker present, both train
as a plain linear model, so a retried or resumed run ends ``ok``.
"""

import math
import os
import signal
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from torch import nn

from harness import hookimpl
from harness.execution.executor import ExecutorSpec
from harness.execution.jobs import Outcome, collect, perform
from harness.options import Option
from harness.registry.specs import ModelSpec


class FirstTime(nn.Module):
    def __init__(self, input_shape, num_classes, marker, fault):
        super().__init__()
        self.marker, self.fault = Path(marker), fault
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))

    def forward(self, x):
        if self.training and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            self.fault()
        return self.net(x)


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _wait():
    time.sleep(120)


def _model(name, fault):
    return ModelSpec(
        name,
        f"the first time it runs: {name}",
        lambda input_shape, num_classes, marker: FirstTime(input_shape, num_classes, marker, fault),
        options={"marker": Option("", "file that says it has run before", "str")},
    )


class OneThread:
    """An executor as a third party would write one: jobs on one background thread."""

    slots = 1

    def __init__(self, request):
        self.threads = request.threads or 1
        self.pool = ThreadPoolExecutor(1)

    def submit(self, job, progress=None) -> Future:
        return self.pool.submit(self._perform, job)

    def _perform(self, job) -> Outcome:
        with tempfile.TemporaryDirectory() as tmp:
            record = perform(job, Path(tmp), worker="test thread")
            return Outcome(record, collect(Path(tmp), record["artifacts"]))

    def describe(self):
        return {"name": "one-thread", "workers": 1}

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


@hookimpl
def register_models(register):
    register(_model("dies-once", _die))
    register(_model("waits-once", _wait))


@hookimpl
def register_executors(register):
    register(ExecutorSpec("one-thread", "jobs on one background thread (a test plugin)", OneThread))
