"""``bench bisect`` on generated repositories: is the commit it names the one that regressed?

Each trial writes ``bench new-plugin``'s package into a new git repository, then 32 commits on
top of it: one, at a place drawn at random, adds an operator to the model's forward pass (a Tanh
after its ReLU); the others change only the README. ``bench bisect --good FIRST --bad HEAD
--counters`` then searches them, as a user would run it, in a process of its own. Each trial's
row: where the culprit was, what bisect named, its sessions (at most ceil(log2 32) + 1 = 6) and
its wall time; then how many trials named the culprit exactly.

The timing case (a commit that makes the model 10% slower, bisected on bench ab's interleaved
rounds) is not run here: each of its sessions is a full bench ab session, about a minute of
fresh workers per round on a 2-core machine, so 20 trials take hours.

A benchmark, not a test: it never fails. From the repository root:

    python benchmarks/bisection.py [--trials 20] [--commits 32] [--seed 0]
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


def make_repository(path: Path, commits: int, culprit: int) -> tuple[PluginNames, list[str]]:
    """The package and ``commits`` commits on it, the ``culprit``-th (from 0) adding a Tanh;
    returns the names and every commit, the package's first."""
    names = PluginNames(NAME)
    write_plugin(NAME, path)
    _git(path, "init", "--quiet", "--initial-branch=main")
    made = [_commit(path, "the package as bench new-plugin writes it")]
    models = path / names.package / "models.py"
    readme = path / "README.md"
    for n in range(commits):
        if n == culprit:
            models.write_text(
                models.read_text().replace("nn.ReLU(),\n", "nn.ReLU(),\n        nn.Tanh(),\n", 1)
            )
        else:
            readme.write_text(readme.read_text() + f"\nnote {n}\n")
        made.append(_commit(path, f"change {n}"))
    return names, made


def trial(scratch: Path, commits: int, culprit: int) -> dict:
    repo = scratch / "repo"
    names, made = make_repository(repo, commits, culprit)
    command = [sys.executable, "-m", "harness", "bisect", "--good", made[0], "--bad", "HEAD",
               "--counters", "--model", names.model, "--dataset", names.dataset,
               "--batch-size", "8", "--mode", "forward", "--round-time", "0.01", "--quiet",
               "--json", "--out", str(scratch / "bisect")]  # fmt: skip
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
    args = parser.parse_args()
    places = random.Random(args.seed).choices(range(args.commits), k=args.trials)
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
          f"load average before {os.getloadavg()[0]:.2f}\n")  # fmt: skip
    print(f"## bench bisect --counters, {args.commits} commits, one adds an operator\n")
    print("| trial | culprit | named | exit | sessions (most) | wall time |")
    print("|---|---|---|---|---|---|")
    rows = []
    for number, place in enumerate(places, 1):
        with tempfile.TemporaryDirectory(prefix="bench-bisection-") as scratch:
            row = trial(Path(scratch), args.commits, place)
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
