"""The command line answers at once (help and ``list suites`` import no torch), and ``--dry-run``
checks a suite and prints its plan without training, downloading, connecting or writing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import COMMANDS, cli
from harness.registry.loading import load_plugins

HEAVY = ("torch", "numpy", "pandas", "matplotlib", "sklearn", "scipy")
PROBE = """
import sys
from harness.cli import main
sys.argv = ["bench", *{args!r}]
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def imported_after(*args: str) -> list[str]:
    """The heavy modules a fresh ``bench ARGS`` process had imported when it finished."""
    code = PROBE.format(args=list(args), heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stderr.strip().splitlines()[-1].replace("'", '"'))


@pytest.mark.parametrize(
    "args",
    [["--help"], ["list", "suites"], *([name, "--help"] for name in COMMANDS)],
    ids=lambda args: " ".join(args),
)
def test_help_and_list_suites_import_nothing_heavy(args: list[str]):
    assert imported_after(*args) == []


def test_a_command_that_runs_still_imports_torch_when_it_needs_it():
    assert "torch" in imported_after("list", "models")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "--suite", "cnn-pruning", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    registry = load_plugins().registry
    suite = registry.suites.get("cnn-pruning")
    assert plan["dry_run"] and plan["procedure"] == "pruning" and plan["executor"] == "local"
    assert plan["runs"] == len(plan["plan"]) > 100
    assert plan["plan"][0] == {"#": 0, "run": "lenet5-digits-dense-s0", "needs": "-", "alone": ""}
    assert suite.path.is_file() and list(tmp_path.iterdir()) == []  # no results folder


def test_dry_run_checks_what_a_run_checks(tmp_path: Path):
    unknown = invoke("run", "--suite", "quickstart", "--executor", "nowhere", "--dry-run")
    assert unknown.exit_code == 2 and "unknown executor 'nowhere'" in unknown.output
    address = invoke("run", "--suite", "quickstart", "--executor", "local://x:1", "--dry-run")
    assert address.exit_code == 2 and "takes no address" in address.output
    missing = invoke(
        "run", "--model", "lenet5", "--dataset", "mnist", "--data-root", str(tmp_path), "--dry-run"
    )
    assert missing.exit_code == 2 and "--download" in missing.output


def test_dry_run_neither_downloads_nor_connects(tmp_path: Path):
    """A cluster address is named, not dialled; --download is allowed, not done."""
    result = invoke(
        "run", "--model", "lenet5", "--dataset", "mnist", "--data-root", str(tmp_path / "data"),
        "--download", "--executor", "dask://127.0.0.1:9", "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "executor: dask://127.0.0.1:9, runs: 1" in result.output
    assert not (tmp_path / "data").exists()


def test_time_and_profile_have_a_dry_run_too():
    timed = invoke("time", "--model", "resnet18", "--batch-size", "8", "--dry-run")
    assert timed.exit_code == 0, timed.output
    assert "procedure: throughput" in timed.output and "resnet18-synthetic-cpu-b8" in timed.output
    profiled = invoke("profile", "--model", "cnn", "--dataset", "digits", "--dry-run")
    assert profiled.exit_code == 0 and "cnn-digits" in profiled.output


def test_ab_dry_run_finds_both_sides_and_plans_without_installing(tmp_path: Path, monkeypatch):
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)  # git:REV names a revision of the repository here
    out = tmp_path / "ab"
    args = ["ab", "--baseline", "git:HEAD", "--model", "lenet5", "--batch-size", "8"]
    result = invoke(*args, "--rounds", "7", "--out", str(out), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "baseline: git:HEAD (commit " in result.output and "rounds: 7" in result.output
    assert "lenet5-synthetic-cpu-b8" in result.output and not out.exists()
    missing = invoke("ab", "--baseline", "git:no-such-rev-xyz", "--model", "lenet5", "--dry-run")
    assert missing.exit_code == 2 and "not a revision" in missing.output
