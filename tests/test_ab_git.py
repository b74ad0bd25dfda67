"""bench ab with ``git:REV`` sides in a plugin package's own repository: each side runs this bench
with that revision of the package, whichever copy of the package is installed; a repository that
``git:`` cannot measure is one line saying what it needs; bench's own is recognized as such.

The repository is ``bench new-plugin``'s package with a second commit whose forward pass is
exactly twice as long and counts twice the FLOPs (:mod:`plugin_repos`), so which commit a side ran
shows in its results file whatever the machine is doing; the session is as short as
``test_ab.py``'s.
"""

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from plugin_repos import (
    commit_all,
    forward_flops,
    git,
    install_commit,
    plugin_repo,
    read_results,
    site_env,
)
from test_ab import REPO, bench_ab, judged

import harness
from harness.cli import cli
from harness.comparing.ab.revisions import BENCH, revision_kind
from harness.comparing.ab.sides import resolve_side
from harness.comparing.matching import compare_files
from harness.comparing.verdicts import CONTENDED, COUNT, REGRESSION, TIME, Rules
from harness.errors import BenchError


def test_two_commits_of_a_plugin_repository_not_its_installed_copy(tmp_path, monkeypatch):
    """The issue's case: ``git:HEAD~1`` against ``git:HEAD`` of a plugin package's repository,
    with a copy of the package installed (the first commit's, on PYTHONPATH as site-packages would
    be: after each side's own folder). Each side runs the commit it names, nothing is registered
    twice, and the twice slower commit is a regression."""
    repo = plugin_repo(tmp_path / "repo")
    old, new = repo.commits
    installed = install_commit(repo, old, tmp_path / "installed")
    monkeypatch.setenv("PYTHONPATH", site_env(installed)["PYTHONPATH"])  # what the workers get
    monkeypatch.chdir(repo.path)
    # 11 rounds: with 7, one round disturbed by the machine leaves no verdict, and which code
    # each side ran is the point here; the output folder given relative to the repository, as
    # bench ab's default one is
    result, out = bench_ab(
        Path(os.path.relpath(tmp_path, repo.path)), "git:HEAD~1", "git:HEAD", "--rounds", "11",
        model=repo.names.model,
    )  # fmt: skip
    assert "registered twice" not in result.output and "warning" not in result.output
    files = {role: read_results(out, role) for role in ("baseline", "candidate")}
    assert files["baseline"]["environment"]["git_commit"] == old
    assert files["candidate"]["environment"]["git_commit"] == new
    assert forward_flops(files["candidate"]) == 2 * forward_flops(files["baseline"])
    for role, document in files.items():
        assert document["execution"]["interleaved"]["bench"] == str(Path(harness.__file__).parent)
        site = out / "sides" / f"site-{document['environment']['git_commit'][:12]}"
        assert (site / repo.names.package / "models.py").is_file(), role
    # the layers run twice: twice the operators, a regression however busy the machine
    assert result.exit_code == 1, result.output
    rows = compare_files(out / "baseline", out / "candidate", Rules()).rows
    counted = {r.metric: r for r in rows if r.kind == COUNT}
    assert counted["forward.operators"].verdict == REGRESSION
    (row,) = [r for r in rows if r.kind == TIME]
    if judged(out):
        assert row.verdict == REGRESSION and row.paired and row.change > 0.5
    else:  # too busy a machine for a timing verdict, and bench says so
        assert row.verdict == CONTENDED


def one_line_error(*args: str) -> str:
    result = CliRunner().invoke(cli, ["ab", *args, "--model", "mine", "--quiet"])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    return line


NEEDS = (
    "git:REV needs bench's own repository or a plugin package's: a pyproject.toml at the "
    "repository's top level that declares [project.entry-points.bench]"
)


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_repository_without_a_plugin_package_is_one_line_saying_what_git_needs(
    tmp_path, monkeypatch, dry_run
):
    """No pyproject, or one without bench entry points, or no repository at all: one line, before
    anything is extracted or installed, with or without --dry-run."""
    out = tmp_path / "ab"
    flags = ["--out", str(out), *(["--dry-run"] if dry_run else [])]
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.chdir(plain)
    line = one_line_error("--baseline", "git:HEAD", *flags)
    assert line == f"error: git:HEAD: {Path.cwd()} is not in a git repository; {NEEDS}"

    git(plain, "init", "--quiet")
    (plain / "notes.txt").write_text("no package here\n")
    first = commit_all(plain, "notes")
    line = one_line_error("--baseline", "git:HEAD", *flags)
    assert line == f"error: git:HEAD: {first[:12]} has no pyproject.toml; {NEEDS}"

    (plain / "pyproject.toml").write_text('[project]\nname = "other"\nversion = "1"\n')
    second = commit_all(plain, "a package that is no bench plugin")
    line = one_line_error("--baseline", "current", "--candidate", "git:HEAD", *flags)
    assert line == f"error: git:HEAD: {second[:12]} has no bench plugins; {NEEDS}"
    assert not (out / "sides").exists()


def test_bench_own_repository_is_still_installed_whole(tmp_path, monkeypatch):
    """bench's own revisions, from its first commit (when its distribution was still named
    ``bench``) to HEAD, are recognized as bench's, whose git: sides run that revision's bench
    (test_ab.py::test_a_side_can_be_an_interpreter_or_a_git_revision measures one)."""
    monkeypatch.chdir(REPO)
    first = subprocess.run(
        ["git", "rev-list", "--max-parents=0", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    head = git(REPO, "rev-parse", "HEAD")
    assert revision_kind("HEAD", head) == BENCH and revision_kind(first[:7], first) == BENCH
    assert resolve_side("baseline", "git:HEAD", tmp_path, install=False).commit == head
    with pytest.raises(BenchError, match="not a revision of the repository"):
        resolve_side("baseline", "git:no-such-branch-xyz", tmp_path, install=False)
