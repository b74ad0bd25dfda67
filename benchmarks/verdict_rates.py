"""How often does bench call the same code a regression, and how often does it catch a real one?

Trials of ``slowed-cnn-small`` (``benchmarks/slowdown.py``: cnn-small whose forward pass is made
slower by an exact factor) on synthetic 1x28x28 data, batch 32 unless ``--batch-size``,
``forward``, one torch thread unless ``--threads``. Each session measures ``--trials``
identically configured runs (fresh model and data each); ``bench ab`` starts fresh worker
processes every round, so what differs between processes is sampled too. Two ways to measure
a baseline against a candidate:

- ``ab``: ``bench ab`` with the two plugin files as sides, interleaved rounds (defaults of
  ``bench ab`` unless ``--rounds``/``--round-time``);
- ``sequential``: ``bench time`` of the baseline, then of the candidate, then ``bench compare``
  of the two files (what CI did before ``bench ab``).

Conditions: ``quiet`` (nothing else of ours running) and ``busy`` (one busy-loop process, which
takes one core of a 2-core machine). A verdict is counted per trial: ``fail`` (exit 1: a
regression), ``no verdict`` (exit 3: contended) or ``pass``. For slowdown 0 a fail is a false
alarm; for a slowdown, a fail is a catch.

    python benchmarks/verdict_rates.py                         # everything (about 3 hours here)
    python benchmarks/verdict_rates.py --methods ab --slowdowns 0,1 --sessions 2

Results: a markdown table on stdout and ``--out`` (JSON with every trial's change and verdict).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slowdown import NAME, write_side  # noqa: E402

from harness.comparing.ab.session import Session, run_session
from harness.comparing.ab.sides import resolve_side
from harness.comparing.matching import compare_files
from harness.comparing.verdicts import CONTENDED, REGRESSION, TIME, Rules
from harness.planning.overrides import Overrides
from harness.reporting.tables import markdown_table

BENCH = [str(Path(sys.executable).with_name("bench"))]


def suite_file(path: Path, trials: int, threads: int, batch_size: int) -> Path:
    labels = ", ".join(f'{{ name = "{NAME}", label = "t{i:02d}" }}' for i in range(trials))
    path.write_text(
        f'name = "verdict-rates"\nprocedure = "throughput"\nmodels = [{labels}]\n'
        f'datasets = [{{ name = "synthetic", options = {{ shape = "1x28x28" }} }}]\n'
        f'\n[throughput]\nbatch_sizes = [{batch_size}]\nmodes = ["forward"]\n'
        f'devices = ["cpu"]\nthreads = {threads}\n',
        encoding="utf-8",
    )
    return path


def changes(cell: dict) -> list[float]:
    return [t["change"] for t in cell["trials"]]


def outcome(verdict: str) -> str:
    return {REGRESSION: "fail", CONTENDED: "no verdict"}.get(verdict, "pass")


def ab_session(work: Path, suite: Path, slowdown: float, args) -> list[dict]:
    sides = {
        role: resolve_side(role, f"plugin:{write_side(work / f'{role}.py', s)}", work)
        for role, s in (("baseline", 0.0), ("candidate", slowdown))
    }
    session = Session(
        baseline=sides["baseline"],
        candidate=sides["candidate"],
        suite=str(suite),
        overrides=Overrides(),
        default_name="verdict-rates",
        rounds=args.rounds,
        round_time=args.round_time,
        threads=args.threads,
    )
    return timing_verdicts(run_session(session, work / "ab", Rules()).comparison)


def sequential_session(work: Path, suite: Path, slowdown: float, args) -> list[dict]:
    for role, s in (("baseline", 0.0), ("candidate", slowdown)):
        plugin = write_side(work / f"{role}.py", s)
        command = [*BENCH, "--plugin", str(plugin), "run", "--suite", str(suite), "--quiet"]
        subprocess.run([*command, "--out", str(work / role)], check=True, capture_output=True)
    return timing_verdicts(compare_files(work / "baseline", work / "candidate", Rules()))


def timing_verdicts(comparison) -> list[dict]:
    """Each timing row's change and verdict: a trial each (the counters beside them are exact,
    the same on both sides of a slowdown that only waits, and would count as passes)."""
    rows = [row for row in comparison.rows if row.kind == TIME]
    return [{"change": row.change, "verdict": row.verdict} for row in rows]


def busy_loop():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="ab,sequential")
    parser.add_argument("--conditions", default="quiet,busy")
    parser.add_argument("--slowdowns", default="0,0.1,0.25,1")
    parser.add_argument("--sessions", type=int, default=4, help="sessions per cell")
    parser.add_argument("--null-sessions", type=int, default=12, help="sessions at slowdown 0")
    parser.add_argument("--trials", type=int, default=10, help="runs per session")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--round-time", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path("results/verdict-rates.json"))
    args = parser.parse_args()
    runners = {"ab": ab_session, "sequential": sequential_session}
    cells, started = [], time.time()
    for condition in args.conditions.split(","):
        for method in args.methods.split(","):
            for slowdown in map(float, args.slowdowns.split(",")):
                sessions = args.null_sessions if slowdown == 0 else args.sessions
                trials = []
                for index in range(sessions):
                    hog = busy_loop() if condition == "busy" else None
                    try:
                        with tempfile.TemporaryDirectory(prefix="verdict-rates-") as tmp:
                            work = Path(tmp)
                            suite = suite_file(
                                work / "suite.toml", args.trials, args.threads, args.batch_size
                            )
                            trials += runners[method](work, suite, slowdown, args)
                    finally:
                        if hog:
                            hog.kill()
                            hog.wait()
                    print(
                        f"{condition} {method} {slowdown:g}: session {index + 1}", file=sys.stderr
                    )
                cells.append(
                    {
                        "condition": condition,
                        "method": method,
                        "slowdown": slowdown,
                        "trials": trials,
                    }
                )
    rows = []
    for cell in cells:
        counts = [outcome(t["verdict"]) for t in cell["trials"]]
        n = len(counts)
        if not n:
            continue
        rows.append(
            {
                "method": cell["method"],
                "condition": cell["condition"],
                "slowdown": f"{100 * cell['slowdown']:g}%",
                "trials": n,
                "fail (exit 1)": f"{counts.count('fail')} ({100 * counts.count('fail') / n:.1f}%)",
                "no verdict (exit 3)": f"{counts.count('no verdict')}",
                "pass": f"{counts.count('pass')}",
                "median change": f"{100 * statistics.median(changes(cell)):+.1f}%",
            }
        )
    print(markdown_table(rows))
    print(
        f"\n{args.threads} torch thread(s); bench ab rounds {args.rounds} x {args.round_time} s; "
        f"{(time.time() - started) / 60:.1f} min"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"settings": vars(args) | {"out": str(args.out)}, "cells": cells})
    )


if __name__ == "__main__":
    main()
