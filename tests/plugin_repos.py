"""Helpers of the tests of ``bench ab`` on a plugin package's own repository: the package that
``bench new-plugin`` writes, in a git repository of its own with two commits, the second making
its model's forward pass exactly twice as long (it runs its layers twice), and offline installs
of it that go on ``PYTHONPATH`` as an installed copy would sit in site-packages, after a side's
own folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.registry.loading import ENV_VAR
from harness.registry.skeleton import PluginNames, write_plugin

GIT = ["git", "-c", "user.name=bench tests", "-c", "user.email=tests@bench.invalid"]
GIT += ["-c", "commit.gpgsign=false"]

TWICE = '''

class Twice(nn.Sequential):
    """The layers run twice: a forward pass exactly twice as long, and twice the FLOPs."""

    def forward(self, x):
        super().forward(x)
        return super().forward(x)
'''


@dataclass(frozen=True)
class PluginRepo:
    path: Path
    names: PluginNames
    commits: tuple[str, ...]  # oldest first


def git(repo: Path, *args: str) -> str:
    done = subprocess.run([*GIT, *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def plugin_repo(path: Path, name: str = "cnn1d", *, slower: bool = True) -> PluginRepo:
    """``bench new-plugin NAME`` committed in a new repository at ``path``; with ``slower``, a
    second commit whose model runs its layers twice."""
    names = PluginNames(name)
    write_plugin(name, path)
    git(path, "init", "--quiet", "--initial-branch=main")
    commits = [commit_all(path, "the package as bench new-plugin writes it")]
    if slower:
        models = path / names.package / "models.py"
        text = models.read_text().replace("\n\ndef build_mlp(", TWICE + "\n\ndef build_mlp(", 1)
        models.write_text(text.replace("return nn.Sequential(", "return Twice(", 1))
        commits.append(commit_all(path, "a forward pass twice as long"))
    return PluginRepo(path, names, tuple(commits))


def install_commit(repo: PluginRepo, commit: str, target: Path) -> Path:
    """Install ``commit`` of ``repo`` into ``target`` offline, from an archive of it (a build in
    the repository would leave its build folders there); returns ``target``."""
    source = target.with_name(f"{target.name}-source")
    source.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=repo.path, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    install_offline(source, target)
    return target


def install_offline(package: Path, target: Path) -> None:
    """``pip install`` ``package`` into ``target`` with no network, no cache and no dependencies."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-cache-dir",
            "--quiet",
            "--target",
            str(target),
            str(package),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def site_env(site: Path) -> dict[str, str]:
    """This environment with ``site`` first on PYTHONPATH and no BENCH_PLUGINS."""
    env = {key: value for key, value in os.environ.items() if key != ENV_VAR}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


def read_results(out: Path, role: str) -> dict:
    """The results file of one side of a ``bench ab`` session written to ``out``."""
    return json.loads((out / role / "results.json").read_text())


def forward_flops(document: dict) -> int:
    """The forward FLOPs per sample of a results file's one run: which commit's model it ran."""
    (run,) = document["runs"]
    return run["metrics"]["flops_per_sample"]["forward"]
