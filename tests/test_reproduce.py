"""Every regression comes with the command that shows it again, in the terminal, the markdown
and the JSON; in GitHub Actions, as an ``::error`` annotation, with the verdict in the job
summary."""

from __future__ import annotations

import json
import shlex

import click
import pytest
from click.testing import CliRunner

from harness.cli import cli

PLUGIN = """
import math

from torch import nn

from harness import ModelSpec, Option, hookimpl


def tiny(input_shape, num_classes, hidden):
    layers = [nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU()]
    return nn.Sequential(*layers, {extra}nn.Linear(hidden, num_classes))


@hookimpl
def register_models(register):
    options = {{"hidden": Option(32, "hidden units", "int", minimum=1)}}
    register(ModelSpec(name="tiny", description="tiny", build=tiny, options=options))
"""
BASE, CAND = "1" * 40, "2" * 40


@pytest.fixture
def measured(tmp_path, monkeypatch):
    """Two bench time results of a plugin model, the candidate with one more layer (a Tanh),
    recorded at two commits."""
    monkeypatch.chdir(tmp_path)
    for side, extra, commit in (("base", "", BASE), ("cand", "nn.Tanh(), ", CAND + "-dirty")):
        (tmp_path / f"{side}.py").write_text(PLUGIN.format(extra=extra))
        flags = ["--plugin", f"{side}.py", "--model", "tiny", "--model-opt", "hidden=16"]
        flags += ["--dataset", "digits", "--batch-size", "8", "--mode", "forward", "--quick"]
        result = CliRunner().invoke(cli, ["time", *flags, "--threads", "1", "--out", side, "-q"])
        assert result.exit_code == 0, result.output
        path = tmp_path / side / "results.json"
        data = json.loads(path.read_text())
        data["environment"]["git_commit"] = commit
        path.write_text(json.dumps(data))
    return tmp_path


COMMAND = (
    "bench ab --baseline git:111111111111 --candidate git:222222222222 --model tiny "
    "--model-opt hidden=16 --dataset digits --batch-size 8 --mode forward "
    "--device cpu --threads 1 --plugin {plugin}"
)


def compare(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, ["compare", "base", "cand", "--metric", "*.operators", *args])


def test_a_regression_prints_the_bench_ab_command_that_shows_it_again(measured):
    result = compare("--markdown-out", "summary.md")
    assert result.exit_code == 1, result.output
    command = COMMAND.format(plugin=measured / "base.py")
    assert f"reproduce: tiny-digits-cpu-b8 forward.operators: {command}" in result.output
    assert (
        f"- tiny-digits-cpu-b8 `forward.operators`: `{command}`"
        in (measured / "summary.md").read_text()
    )
    ab = cli.get_command(click.Context(cli), "ab")
    ab.make_context("ab", shlex.split(command)[2:])  # bench ab takes it as it is


def test_the_json_carries_the_command_on_the_regression_row(measured):
    rows = json.loads(compare("--json").output)["rows"]
    (row,) = [r for r in rows if r["metric"] == "forward.operators"]
    assert row["verdict"] == "REGRESSION"
    assert row["reproduce"] == COMMAND.format(plugin=measured / "base.py")


def test_without_a_recorded_commit_there_is_no_command_rather_than_a_wrong_one(measured):
    path = measured / "base" / "results.json"
    data = json.loads(path.read_text())
    data["environment"]["git_commit"] = None
    path.write_text(json.dumps(data))
    result = compare()
    assert result.exit_code == 1 and "reproduce:" not in result.output


def test_in_github_actions_a_regression_is_an_annotation_and_the_verdict_a_job_summary(
    measured, monkeypatch
):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(measured / "step-summary.md"))
    result = compare("--json")
    assert result.exit_code == 1
    json.loads(result.stdout)  # stdout stays one JSON object: annotations go to stderr
    (annotation,) = [line for line in result.stderr.splitlines() if line.startswith("::error")]
    assert annotation.startswith("::error title=bench%3A forward.operators regressed::")
    assert "tiny-digits-cpu-b8 forward.operators +1" in annotation
    assert "reproduce: bench ab --baseline git:111111111111" in annotation
    summary = (measured / "step-summary.md").read_text()
    assert summary.startswith("## bench compare: regression") and "### Reproduce" in summary
