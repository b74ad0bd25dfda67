"""Wall time of whole suites on each executor, and what each executor costs per run.

For each suite (default: cnn-pruning and regularization, their default settings) it runs
``bench run --suite S -q`` as a user would, one after another:

- sequential: the ``local`` executor, one thread per run (``--threads 1``);
- ``--jobs 2``: the ``processes`` executor, two workers that each run one run after another,
  one thread each;
- ``--isolate --jobs 2``: the same with a fresh worker process for every run;
- ``--executor dask --jobs 2``: a local Dask cluster of two one-thread workers;
- and, for reference, sequential with torch's default thread count (no ``--threads``; only for
  a suite without its own ``threads``), which gives other numbers (float sums in another
  order) and so is not part of the comparison.

It checks that the first four gave the same seed-determined numbers (accuracies, losses,
counts), and prints each wall time with its ratio to sequential. The per-run overhead is measured
on a suite of small runs (an MLP of 16 units, one epoch on 8x8 digits) executed one at a time:
(wall time on the executor - wall time in-process) / runs, so start-up costs are spread over the
runs as a user would see them. The load average before and after each command is printed beside
it. A benchmark, not a test: it never fails. From the repository root:

    python benchmarks/executors.py [--suite cnn-pruning --suite regularization] [--small 24]
    python benchmarks/executors.py --suite cnn-pruning --pairs 3   # interleaved, median ratio
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from harness.devices import cpu_model
from harness.execution.rerun import comparable, differences
from harness.registry.loading import load_plugins

BENCH = [sys.executable, "-m", "harness"]  # what the bench script runs
EXECUTORS = {
    "sequential": ["--threads", "1"],
    "--jobs 2": ["--threads", "1", "--jobs", "2"],
    "--isolate --jobs 2": ["--threads", "1", "--isolate", "--jobs", "2"],
    "dask --jobs 2": ["--threads", "1", "--executor", "dask", "--jobs", "2"],
}
REFERENCE = {"sequential, default threads": []}


def timed(args: list[str], out: Path) -> tuple[float, dict, str]:
    """Seconds ``bench ARGS --out OUT`` took, its results, and the load averages around it."""
    before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run([*BENCH, *args, "-q", "--out", str(out)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    results = json.loads((out / "results.json").read_text())
    return seconds, results, f"load {before:.2f} -> {os.getloadavg()[0]:.2f}"


def same_numbers(a: dict, b: dict) -> bool:
    pairs = zip(a["runs"], b["runs"], strict=True)
    return all(
        not differences(comparable(x["metrics"]), comparable(y["metrics"])) for x, y in pairs
    )


def suite_wall_times(suite: str, scratch: Path) -> None:
    print(f"\n## {suite}\n\n| executor | wall time | vs sequential | same numbers | load |")
    print("|---|---|---|---|---|")
    base = None
    spec = load_plugins().registry.suites.get(suite)
    own_threads = "threads" in tomllib.loads(Path(spec.path).read_text())
    for label, flags in {**EXECUTORS, **({} if own_threads else REFERENCE)}.items():
        out = scratch / f"{suite}-{label.replace(' ', '_')}"
        seconds, results, load = timed(["run", "--suite", suite, *flags], out)
        if base is None:
            base = (seconds, results)
        same = same_numbers(results, base[1])
        same = "reference" if label in REFERENCE else ("yes" if same else "NO")
        print(f"| {label} | {seconds:.1f} s ({len(results['runs'])} runs) | "
              f"{base[0] / seconds:.2f}x | {same} | {load} |", flush=True)  # fmt: skip


def interleaved_pairs(suite: str, pairs: int, scratch: Path) -> None:
    """Sequential and ``--jobs 2`` alternately, ``pairs`` times (the order swapped every pair,
    so that a slow spell of the machine does not always fall on the same side): each pair's
    ratio, and their median, which one noisy measurement cannot give."""
    print(f"\n## {suite}: {pairs} interleaved pairs\n")
    print("| pair | sequential | --jobs 2 | ratio | same numbers | load |")
    print("|---|---|---|---|---|---|")
    ratios, base = [], None
    for pair in range(pairs):
        order = ["sequential", "--jobs 2"][:: 1 if pair % 2 == 0 else -1]
        seconds, loads, same = {}, [], True
        for label in order:
            out = scratch / f"{suite}-pair{pair}-{label.replace(' ', '_')}"
            seconds[label], results, load = timed(["run", "--suite", suite, *EXECUTORS[label]], out)
            base = base or results
            same = same and same_numbers(results, base)
            loads.append(load)
        ratios.append(seconds["sequential"] / seconds["--jobs 2"])
        print(f"| {pair + 1} ({order[0]} first) | {seconds['sequential']:.1f} s | "
              f"{seconds['--jobs 2']:.1f} s | {ratios[-1]:.2f}x | {'yes' if same else 'NO'} | "
              f"{'; '.join(loads)} |", flush=True)  # fmt: skip
    ordered = sorted(ratios)
    print(f"\nmedian {statistics.median(ratios):.2f}x, range {ordered[0]:.2f}-{ordered[-1]:.2f}x")


def overhead(runs: int, scratch: Path) -> None:
    """Per-run cost of each executor, one run at a time, on small runs."""
    suite = scratch / "small.toml"
    suite.write_text(
        'models = [{name = "mlp", options = {hidden = 16}}]\n'
        'datasets = [{name = "digits", options = {size = 8}}]\n'
        f"seeds = {list(range(runs))}\nthreads = 1\n[train]\nepochs = 1\n"
    )
    print(f"\n## per-run overhead ({runs} small runs, one at a time)\n")
    print("| executor | wall time | overhead per run | load |\n|---|---|---|---|")
    one_at_a_time = {
        "local (in-process)": [],
        "processes --jobs 1": ["--jobs", "1"],
        "processes --isolate": ["--isolate"],
        "dask --jobs 1": ["--executor", "dask", "--jobs", "1"],
    }
    base = None
    for label, flags in one_at_a_time.items():
        out = scratch / f"small-{label.replace(' ', '_')}"
        seconds, results, load = timed(["run", "--suite", str(suite), *flags], out)
        base = base if base is not None else seconds
        extra = f"{1000 * (seconds - base) / runs:+.0f} ms" if seconds != base else "baseline"
        print(f"| {label} | {seconds:.1f} s | {extra} | {load} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append")
    parser.add_argument(
        "--small", type=int, default=24, help="small runs for the overhead (0: skip it)"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="instead of one row per executor: this many interleaved sequential / --jobs 2 "
        "pairs per suite, and the median ratio",
    )
    args = parser.parse_args()
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-executors-") as tmp:
        if args.pairs:
            for suite in args.suite or ["cnn-pruning", "regularization"]:
                interleaved_pairs(suite, args.pairs, Path(tmp))
            return
        if args.small:
            overhead(args.small, Path(tmp))
        for suite in args.suite or ["cnn-pruning", "regularization"]:
            suite_wall_times(suite, Path(tmp))


if __name__ == "__main__":
    main()
