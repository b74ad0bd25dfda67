"""``bench bisect``: the first bad commit in at most ceil(log2 k) + 1 sessions, "no verdict"
rather than a guessed commit when a session cannot decide, and a real search over a plugin
package's repository on its exact counters."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner
from plugin_repos import TWICE, commit_all, plugin_repo

from harness.cli import cli
from harness.comparing.bisect import BAD, GOOD, NO_VERDICT, Step, most_sessions, search


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
    """Six commits after the good one; the fourth runs the model's layers twice (twice the
    operators), the others change only the README. On the counters, one round per session."""
    repo = plugin_repo(tmp_path / "repo", slower=False)
    readme, models = repo.path / "README.md", repo.path / repo.names.package / "models.py"
    commits = []
    for n in range(6):
        if n == 3:
            text = models.read_text().replace("\n\ndef build_mlp(", TWICE + "\n\ndef build_mlp(", 1)
            models.write_text(text.replace("return nn.Sequential(", "return Twice(", 1))
        else:
            readme.write_text(readme.read_text() + f"\nnote {n}\n")
        commits.append(commit_all(repo.path, f"change {n}"))
    monkeypatch.chdir(repo.path)
    args = ["bisect", "--good", repo.commits[0], "--bad", "HEAD", "--counters"]
    args += ["--model", repo.names.model, "--dataset", repo.names.dataset, "--batch-size", "8"]
    args += ["--mode", "forward", "--round-time", "0.01", "--quiet"]
    args += ["--out", str(tmp_path / "bisect"), "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["culprit"] == commits[3] and found["commits"] == commits
    assert found["sessions"] <= found["most_sessions"] == 4
    assert [s["verdict"] for s in found["steps"]][0] == BAD
    for step in found["steps"]:
        expected = BAD if commits.index(step["commit"]) >= 3 else GOOD
        assert (
            step["verdict"] == expected
            and "exact count" in step["evidence"]
            or (step["verdict"] == GOOD == expected)
        )
