import os

import pytest
import torch

from harness.execution.executor import usable_cores
from harness.planning.protocol import RunContext
from harness.registry.loading import load_plugins


def _share_the_cores() -> None:
    """Under pytest-xdist, each worker's torch takes its share of the cores, so that workers
    do not each start a thread per core and wait for one another at every operator."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, usable_cores() // workers))


_share_the_cores()


@pytest.fixture(scope="session")
def registry():
    return load_plugins().registry


@pytest.fixture
def cpu_context(registry, tmp_path):
    return RunContext(registry=registry, device=torch.device("cpu"), out_dir=tmp_path)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """``run_suite`` sets torch's thread count for the whole process (``--threads``, a suite's
    ``threads``); give it back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# Plugins written against the import paths from before the stage layout, run by
# tests/test_public_api.py; their own tests are not part of bench's suite.
collect_ignore_glob = ["data/*"]
