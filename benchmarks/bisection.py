"""``bench bisect`` on generated repositories: is the commit it names the one that regressed?

Each trial writes ``bench new-plugin``'s package into a new git repository, then 32 commits on
top of it: one, at a place drawn at random, is the culprit; the others change only the README.
``bench bisect --good FIRST --bad HEAD`` then searches them, as a user would run it, in a
process of its own. Two cases (``--case``):

- ``operator``: the culprit adds an operator to the model's forward pass (a Tanh after its
  ReLU), bisected with ``--counters``: one round of each side per session;
- ``slowdown``: the package's forward pass can wait (``SLOWDOWN = 0.0``: two clock reads) and
  the culprit makes it 10% slower (``SLOWDOWN = 0.1``: it spins a tenth of the layers' own
  time), bisected on bench ab's interleaved timing rounds, fresh workers each. With bench ab's
  default 20 rounds a session takes about two minutes here, a trial about twelve; ``--skip``
  resumes the seed's sequence of trials, so that they can be run a few at a time.

Each trial's row: where the culprit was, what bisect named, its sessions (at most
ceil(log2 32) + 1 = 6) and its wall time; then how many trials named the culprit exactly.

A benchmark, not a test: it never fails. From the repository root:

    python benchmarks/bisection.py [--case operator|slowdown] [--trials 20] [--commits 32]
                                   [--seed 0] [--skip 0] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.devices import cpu_model
from harness.registry.skeleton import PluginNames, write_plugin

GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@bench.invalid"]
GIT += ["-c", "commit.gpgsign=false"]
NAME = "bisected"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run([*GIT, *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


WAITING = '''

SLOWDOWN = 0.0  # the forward pass takes (1 + SLOWDOWN) times as long as its layers


class Waiting(nn.Sequential):
    """The layers, then a spin for SLOWDOWN times as long as they took."""

    def forward(self, x):
        start = time.perf_counter()
        out = super().forward(x)
        deadline = start + (1 + SLOWDOWN) * (time.perf_counter() - start)
        while time.perf_counter() < deadline:
            pass
        return out
'''


@dataclass(frozen=True)
class Case:
    """A kind of culprit: how the package starts, what the culprit changes, how it is sought."""

    first: str  # the first commit's message
    start: Callable[[str], str]  # models.py as new-plugin writes it -> the first commit's
    culprit: Callable[[str], str]  # models.py before the culprit -> after it
    flags: tuple[str, ...]  # bench bisect's options besides the revisions and the names


CASES = {
    "operator": Case(
        "the package as bench new-plugin writes it",
        lambda text: text,
        lambda text: text.replace("nn.ReLU(),\n", "nn.ReLU(),\n        nn.Tanh(),\n", 1),
        ("--counters", "--batch-size", "8", "--mode", "forward", "--round-time", "0.01"),
    ),
    "slowdown": Case(
        "the package as bench new-plugin writes it, its forward pass able to wait",
        lambda text: (
            text.replace("import math\n", "import math\nimport time\n", 1).replace(
                "return nn.Sequential(", "return Waiting(", 1
            )
            + WAITING
        ),
        lambda text: text.replace("SLOWDOWN = 0.0", "SLOWDOWN = 0.1", 1),
        ("--model-opt", "hidden=8192", "--batch-size", "256", "--mode", "forward"),
    ),
}


def make_repository(
    path: Path, commits: int, culprit: int, case: Case = CASES["operator"]
) -> tuple[PluginNames, list[str]]:
    """The package and ``commits`` commits on it, the ``culprit``-th (from 0) ``case``'s
    culprit; returns the names and every commit, the package's first."""
    names = PluginNames(NAME)
    write_plugin(NAME, path)
    models = path / names.package / "models.py"
    models.write_text(case.start(models.read_text()))
    _git(path, "init", "--quiet", "--initial-branch=main")
    made = [_commit(path, case.first)]
    readme = path / "README.md"
    for n in range(commits):
        if n == culprit:
            models.write_text(case.culprit(models.read_text()))
        else:
            readme.write_text(readme.read_text() + f"\nnote {n}\n")
        made.append(_commit(path, f"change {n}"))
    return names, made


def trial(scratch: Path, commits: int, culprit: int, case: Case, extra: list[str]) -> dict:
    repo = scratch / "repo"
    names, made = make_repository(repo, commits, culprit, case)
    command = [sys.executable, "-m", "harness", "bisect", "--good", made[0], "--bad", "HEAD",
               "--model", names.model, "--dataset", names.dataset, *case.flags, *extra,
               "--quiet", "--json", "--out", str(scratch / "bisect")]  # fmt: skip
    began = time.perf_counter()
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    found = json.loads(done.stdout) if done.stdout.strip() else {}
    return {
        "culprit": culprit + 1,  # its place among the commits after the good one, from 1
        "named": made.index(found["culprit"]) if found.get("culprit") in made else None,
        "exit": done.returncode,
        "sessions": found.get("sessions"),
        "most": found.get("most_sessions"),
        "seconds": seconds,
        "reason": found.get("reason", done.stderr.strip()[-200:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--commits", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", choices=sorted(CASES), default="operator")
    parser.add_argument(
        "--rounds", type=int, help="bench ab rounds per session (default: bench ab's, 20)"
    )
    parser.add_argument(
        "--skip", type=int, default=0, help="start after this many trials of the seed's places"
    )
    args = parser.parse_args()
    case = CASES[args.case]
    extra = ["--rounds", str(args.rounds)] if args.rounds else []
    places = random.Random(args.seed).choices(range(args.commits), k=args.skip + args.trials)
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
          f"load average before {os.getloadavg()[0]:.2f}\n")  # fmt: skip
    print(f"## bench bisect {' '.join([*case.flags, *extra])}, {args.commits} commits, "
          f"one is the {args.case} culprit\n")  # fmt: skip
    print("| trial | culprit | named | exit | sessions (most) | wall time |")
    print("|---|---|---|---|---|---|")
    rows = []
    for number, place in enumerate(places[args.skip :], args.skip + 1):
        with tempfile.TemporaryDirectory(prefix="bench-bisection-") as scratch:
            row = trial(Path(scratch), args.commits, place, case, extra)
        rows.append(row)
        named = row["named"] if row["named"] is not None else f"none ({row['reason']})"
        sessions = f"{row['sessions']} ({row['most']})"
        print(f"| {number} | {row['culprit']} | {named} | {row['exit']} | {sessions} | "
              f"{row['seconds']:.1f} s |", flush=True)  # fmt: skip
    exact = sum(row["named"] == row["culprit"] for row in rows)
    within = all((row["sessions"] or 0) <= (row["most"] or 0) for row in rows)
    mean = sum(row["seconds"] for row in rows) / len(rows)
    print(
        f"\n{exact} of {len(rows)} trials named the culprit exactly (goal 95%); every trial "
        f"within its session bound: {'yes' if within else 'NO'}; mean wall time {mean:.1f} s"
    )
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
