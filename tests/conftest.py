import multiprocessing.util
import os
from pathlib import Path

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
# multiprocessing keeps the sockets of its forkserver in one directory per process, made on first
# use under the temporary directory of that moment: make it now, under the system's, so that a
# test that points tempfile at its own (long) tmp_path does not push every later socket path in
# this worker past the 108 bytes AF_UNIX allows.
multiprocessing.util.get_temp_dir()


@pytest.fixture(scope="session")
def registry():
    return load_plugins().registry


@pytest.fixture(scope="session")
def runs_differing_in_lr(tmp_path_factory) -> tuple[Path, Path]:
    """The results folders of two ``bench run``s of a tiny MLP on 8x8 digits, one epoch each,
    that differ only in their learning rate: 0.01 and 0.05."""
    from click.testing import CliRunner

    from harness.cli import cli

    tiny = ["--model", "mlp", "--model-opt", "hidden=8", "--dataset", "digits"]
    tiny += ["--dataset-opt", "size=8", "--epochs", "1", "--threads", "1", "--quiet"]
    threads, folders = torch.get_num_threads(), []
    for lr in ("0.01", "0.05"):
        out = tmp_path_factory.mktemp("runs") / f"lr-{lr}"
        result = CliRunner().invoke(cli, ["run", *tiny, "--lr", lr, "--out", str(out)])
        assert result.exit_code == 0, result.output
        folders.append(out)
    torch.set_num_threads(threads)
    return folders[0], folders[1]


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


@pytest.fixture(autouse=True)
def outside_github_actions(monkeypatch):
    """Tests run as on a terminal even in a GitHub workflow: no annotations, no job summary
    (tests/test_reproduce.py sets them where it checks them)."""
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
