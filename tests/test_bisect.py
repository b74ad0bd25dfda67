"""``bench bisect``: the first bad commit in at most ceil(log2 k) + 1 sessions, "no verdict"
rather than a guessed commit when a session cannot decide, and a real search over a plugin
package's repository on its exact counters."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.comparing.bisect import BAD, GOOD, NO_VERDICT, Step, most_sessions, search

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bisection import CASES, make_repository  # noqa: E402  (the benchmark's generated repository)


def judged_by(culprit: int, unclear: set[int] = frozenset()):
    """A fake session: commits from ``culprit`` on are bad; those in ``unclear`` undecided."""
    sessions = []

    def judge(commit: str) -> Step:
        sessions.append(commit)
        index = int(commit)
        verdict = NO_VERDICT if index in unclear else BAD if index >= culprit else GOOD
        return Step(commit, verdict, f"session on {commit}")

    return judge, sessions


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 32, 33])
def test_every_culprit_is_found_in_at_most_ceil_log2_k_plus_one_sessions(k):
    commits = [str(i) for i in range(k)]
    for culprit in range(k):
        judge, sessions = judged_by(culprit)
        found = search("good", "bad", commits, judge)
        assert found.culprit == str(culprit), (k, culprit)
        assert len(sessions) <= most_sessions(k) == math.ceil(math.log2(k)) + 1
        assert sessions[0] == commits[-1]  # the bad revision first: is there anything to find?


def test_a_session_without_a_verdict_stops_the_search_with_the_range_left():
    commits = [str(i) for i in range(16)]
    judge, sessions = judged_by(11, unclear={7})
    found = search("good", "bad", commits, judge)
    assert found.culprit is None and sessions == ["15", "7"]
    assert "no verdict at 7" in found.reason and "the culprit is in good..15" in found.reason


def test_a_bad_revision_no_worse_than_the_good_one_has_nothing_to_find():
    judge, sessions = judged_by(culprit=99)
    found = search("good", "bad", [str(i) for i in range(8)], judge)
    assert found.culprit is None and sessions == ["7"] and "nothing to find" in found.reason


def test_bisect_finds_the_commit_that_added_operators_in_a_plugin_repository(tmp_path, monkeypatch):
    """Six commits after the good one; the fourth adds a Tanh to the model's forward pass (one
    more operator), the others change only the README (benchmarks/bisection.py's repository).
    On the counters, one round per session."""
    names, made = make_repository(tmp_path / "repo", commits=6, culprit=3)
    good, commits = made[0], made[1:]
    monkeypatch.chdir(tmp_path / "repo")
    args = ["bisect", "--good", good, "--bad", "HEAD", "--counters"]
    args += ["--model", names.model, "--dataset", names.dataset, "--batch-size", "8"]
    args += ["--mode", "forward", "--round-time", "0.01", "--quiet"]
    args += ["--out", str(tmp_path / "bisect"), "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["culprit"] == commits[3] and found["commits"] == commits
    assert found["sessions"] <= found["most_sessions"] == 4
    assert [s["verdict"] for s in found["steps"]][0] == BAD
    for step in found["steps"]:
        bad = commits.index(step["commit"]) >= 3
        assert step["verdict"] == (BAD if bad else GOOD), step
        assert ("exact count" in step["evidence"]) == bad  # how sure: exact, and what moved


def _models_at(repo: Path, commit: str, package: str):
    """The package's models module as it was at ``commit``, imported under its own name."""
    path = repo.parent / f"models_{commit[:12]}.py"
    shown = ["git", "show", f"{commit}:{package}/models.py"]
    path.write_text(subprocess.run(shown, cwd=repo, capture_output=True, text=True).stdout)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_slowdown_benchmark_changes_only_how_long_the_forward_pass_waits(tmp_path):
    """The timing bisection's repository: the culprit alone touches models.py, setting
    SLOWDOWN from 0 to 0.1, and the model computes what new-plugin's MLP computes either way
    (so its counters, and everything but its time, stay the same)."""
    import torch

    names, made = make_repository(tmp_path / "repo", 4, culprit=2, case=CASES["slowdown"])
    changed = [
        commit
        for commit in made[1:]
        if f"{names.package}/models.py" in subprocess.run(
            ["git", "show", "--name-only", "--format=", commit],
            cwd=tmp_path / "repo", capture_output=True, text=True,
        ).stdout
    ]  # fmt: skip
    assert changed == [made[3]]
    before, after = (_models_at(tmp_path / "repo", c, names.package) for c in made[2:4])
    assert (before.SLOWDOWN, after.SLOWDOWN) == (0.0, 0.1)
    torch.manual_seed(0)
    model = after.build_mlp((16,), 3, hidden=8)
    x = torch.randn(5, 16)
    assert isinstance(model, after.Waiting)
    assert torch.equal(model(x), torch.nn.Sequential(*model)(x))
