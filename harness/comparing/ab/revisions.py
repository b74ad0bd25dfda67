"""``git:REV`` sides of ``bench ab``: a revision of the repository in the current directory,
extracted with ``git archive`` and installed into a folder of its own with ``pip install --no-deps
--no-build-isolation --no-index --target``.

What that revision is decides what the side runs:

- bench's own repository (its ``pyproject.toml`` names ``bench-harness``, or it holds the
  ``harness`` package, as revisions from before the rename do): that revision's bench, run on this
  interpreter's other packages;
- a plugin package (its ``pyproject.toml`` declares ``[project.entry-points.bench]``): *this*
  bench, with that revision of the package.

The folder goes first on the side's import path (:class:`harness.comparing.ab.sides.Side`), so the
worker imports the revision's modules, not an installed copy of the same package, and finds the
revision's metadata first: ``importlib.metadata.entry_points`` reads one distribution per name, the
first on the path, so the installed copy's entry points are never loaded and its models cannot
clash with the revision's (:func:`harness.installed_entry_points`).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

from harness import DISTRIBUTION, ENTRY_POINT_GROUP
from harness.errors import BenchError

BENCH, PLUGIN = "bench", "plugin"  # the kinds of repository a revision can be of
LOG_TAIL = 20
NEEDS = (
    f"git:REV needs bench's own repository or a plugin package's: a pyproject.toml at the "
    f"repository's top level that declares [project.entry-points.{ENTRY_POINT_GROUP}]"
)


def _git(*args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], capture_output=True, check=False, **kwargs)
    except FileNotFoundError:
        raise BenchError("git:REV needs the git command, and there is none on PATH") from None


def revision_commit(rev: str) -> str:
    """The commit ``rev`` names in the current directory's repository."""
    if _git("rev-parse", "--git-dir").returncode != 0:
        raise BenchError(f"git:{rev}: {Path.cwd()} is not in a git repository; {NEEDS}")
    found = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", text=True)
    if found.returncode != 0:
        raise BenchError(f"git:{rev}: not a revision of the repository in {Path.cwd()}")
    return found.stdout.strip()


def find_revision(rev: str) -> tuple[str, str]:
    """The commit ``rev`` names in the current directory's repository, and its kind
    (:data:`BENCH` or :data:`PLUGIN`); a revision ``git:`` cannot measure is an error."""
    commit = revision_commit(rev)
    return commit, revision_kind(rev, commit)


def revision_kind(rev: str, commit: str) -> str:
    """Whether ``commit`` is of bench's own repository or of a plugin package's; anything else
    is an error saying what ``git:`` needs."""
    pyproject = _git("show", f"{commit}:pyproject.toml", text=True)
    try:
        project = tomllib.loads(pyproject.stdout).get("project", {})
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(
            f"git:{rev}: {commit[:12]}'s pyproject.toml is not valid TOML ({exc})"
        ) from None
    own = _git("cat-file", "-e", f"{commit}:harness/__init__.py").returncode == 0
    if project.get("name") == DISTRIBUTION or own:
        return BENCH
    if project.get("entry-points", {}).get(ENTRY_POINT_GROUP):
        return PLUGIN
    what = "no bench plugins" if pyproject.returncode == 0 else "no pyproject.toml"
    raise BenchError(f"git:{rev}: {commit[:12]} has {what}; {NEEDS}")


def install_revision(rev: str, work_dir: Path) -> tuple[str, Path]:
    """Extract ``rev`` of the current directory's repository and install it into a folder of
    its own; returns the commit and that folder (reused when already installed)."""
    commit, kind = find_revision(rev)
    site = work_dir / f"site-{commit[:12]}"
    if (site / ".installed").is_file():
        return commit, site
    source = work_dir / f"src-{commit[:12]}"
    _extract(rev, commit, source)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    pip += ["--no-build-isolation", "--target", str(site), str(source)]
    installed = subprocess.run(pip, capture_output=True, text=True, check=False)
    if installed.returncode != 0:
        tail = "\n".join(installed.stderr.strip().splitlines()[-LOG_TAIL:])
        raise BenchError(
            f"git:{rev}: installing {commit[:12]} failed (its build backend must be installed "
            f"here, as it is built without build isolation):\n{tail}"
        )
    if kind == BENCH and not (site / "harness" / "comparing" / "ab" / "worker.py").is_file():
        what = "bench ab" if not (site / "harness" / "abworker.py").is_file() else "bench-harness"
        raise BenchError(
            f"git:{rev}: {commit[:12]} predates {what} (it has no "
            "harness/comparing/ab/worker.py); measure it on its own (bench time) and compare "
            "the results files with bench compare instead"
        )
    (site / ".installed").touch()
    return commit, site


def _extract(rev: str, commit: str, source: Path) -> None:
    source.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(["git", "archive", "--format=tar", commit], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
            tar.extractall(source, filter="data")
        else:
            tar.extractall(source)  # noqa: S202 - the user's own repository's archive
    if archive.wait() != 0:
        raise BenchError(f"git:{rev}: git archive failed")
