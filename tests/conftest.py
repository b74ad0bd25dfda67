import pytest
import torch

from harness.plugins import load_plugins
from harness.procedure import RunContext


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
