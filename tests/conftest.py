import pytest
import torch

from harness.planning.protocol import RunContext
from harness.registry.loading import load_plugins


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
