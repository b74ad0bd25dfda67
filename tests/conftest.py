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
