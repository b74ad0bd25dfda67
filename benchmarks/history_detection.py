"""How well ``bench history detect`` finds steps in performance histories, on real noise.

Noise: ``--record`` measures real forward timings on this machine and saves them to
``benchmarks/data/timing-noise.json``: ``--processes`` separate processes (as separate CI runs
would be), each timing LeNet-5's forward pass on a batch of 64, one torch thread, in
``--blocks`` blocks, each measured as the throughput suite measures a mode (warm-up 1 and
0.2 s, then samples until 5 of them and 0.5 s) with a fresh model and batch, as a fresh run
would have. Without ``--record`` the saved noise is used, so the figures can be made again.

Synthetic histories: each series has ``--commits`` commits; each commit pools
``--runs-per-commit`` recorded blocks at random (without replacement, from any process: the
run-to-run variation is real), as measuring each commit in that many runs would, and from a
known commit on (drawn between the 10th and the 10th from last) every sample is
multiplied by 1 + step. For each step size (0 for step-free series) ``--series`` series are
made and detected in one call, as ``bench history detect`` would test them. Printed: per step
size, the share of series whose step was found, how far the found commit was from the true one,
and the change points found in step-free series (false ones). A benchmark, not a test: it never
fails. From the repository root:

    python benchmarks/history_detection.py [--record] [--series 100] [--commits 60]
        [--runs-per-commit 8] [--steps 0,0.1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness.comparing.verdicts import TIME
from harness.devices import cpu_model
from harness.history.archive import Entry
from harness.history.detect import Series, detect

NOISE = Path(__file__).parent / "data" / "timing-noise.json"
STEPS = (0.0, 0.03, 0.05, 0.10, 0.20)


def record_blocks(blocks: int) -> list[list[float]]:
    """One process's blocks of real forward timings (seconds)."""
    import torch

    from harness.measuring.timer import LoopSettings, Workload, measure
    from harness.registry.loading import load_plugins

    torch.set_num_threads(1)
    registry = load_plugins().registry
    loop = LoopSettings(warmup=1, warmup_time=0.2, repeats=5, min_time=0.5, max_time=5.0)
    recorded = []
    for _ in range(blocks):
        model = registry.models.get("lenet5").create((1, 28, 28), 10, {})
        inputs = torch.randn(64, 1, 28, 28)
        workload = Workload(model, inputs, torch.zeros(64, dtype=torch.long), torch.device("cpu"))
        recorded.append(measure(workload, ["forward"], loop)["forward"]["samples"])
    return recorded


def record(processes: int, blocks: int) -> None:
    load = os.getloadavg()[0]
    started = time.time()
    pools = []
    for _ in range(processes):
        code = (
            "import json, sys; sys.path.insert(0, 'benchmarks'); import history_detection as h; "
            f"print(json.dumps(h.record_blocks({blocks})))"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        pools.append(json.loads(done.stdout))
    NOISE.parent.mkdir(exist_ok=True)
    NOISE.write_text(
        json.dumps(
            {
                "what": "LeNet-5 forward, batch 64, 1 torch thread, the throughput suite's loop, "
                "seconds",
                "machine": cpu_model() or platform.machine(),
                "cpus": os.cpu_count(),
                "load_before": round(load, 2),
                "load_after": round(os.getloadavg()[0], 2),
                "seconds": round(time.time() - started, 1),
                "processes": pools,
            }
        )
        + "\n"
    )


def synthetic(
    blocks: list[list[float]],
    step: float,
    commits: int,
    runs: int,
    rng: np.random.Generator,
    name: str,
):
    """One series of ``commits`` commits, each pooling ``runs`` real blocks, with a step at a
    random commit; (series, commit)."""
    at = int(rng.integers(10, commits - 10 + 1))
    chosen = rng.choice(len(blocks), size=(commits, runs), replace=False)
    samples = [
        tuple(x * (1 + step if i >= at else 1) for b in row for x in blocks[b])
        for i, row in enumerate(chosen)
    ]
    entries = [
        Entry(f"c{i:03d}", f"c{i:03d}", None, f"2026-01-01T{i:05d}", "", "") for i in range(commits)
    ]
    return Series(name, name, "lenet5", "forward", TIME, False, "here", entries, samples), at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", action="store_true", help="measure new noise first")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--commits", type=int, default=60)
    parser.add_argument(
        "--runs-per-commit",
        type=int,
        default=1,
        help="blocks pooled into each commit, as measuring each commit in that many runs would",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps", default=",".join(f"{x:g}" for x in STEPS), help="step sizes, comma-separated"
    )
    args = parser.parse_args()
    if args.record:
        record(args.processes, args.blocks)
    noise = json.loads(NOISE.read_text())
    blocks = [block for pool in noise["processes"] for block in pool]
    sizes = sorted(len(block) for block in blocks)
    print(f"noise: {len(blocks)} blocks of {sizes[0]}-{sizes[-1]} samples, {noise['what']}, "
          f"recorded on {noise['machine']} ({noise['cpus']} CPUs), load "
          f"{noise['load_before']} -> {noise['load_after']}")  # fmt: skip
    if args.commits * args.runs_per_commit > len(blocks):
        raise SystemExit(f"{args.commits} commits of {args.runs_per_commit} runs need more "
                         f"than the {len(blocks)} recorded blocks: --record more")  # fmt: skip
    print(f"{args.series} series of {args.commits} commits per row, each commit "
          f"{args.runs_per_commit} run(s), detected in one call each\n")  # fmt: skip
    print("| step | series with the step found | found at the true commit | within one | "
          "found elsewhere (false) | seconds |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(args.seed)
    for step in (float(x) for x in args.steps.split(",")):
        made = [
            synthetic(blocks, step, args.commits, args.runs_per_commit, rng, f"s{i}")
            for i in range(args.series)
        ]
        start = time.perf_counter()
        detection = detect([series for series, _ in made])
        seconds = time.perf_counter() - start
        truth = {series.key: at for series, at in made}
        found, exact, near, false = set(), 0, 0, 0
        for change in detection.changes:
            distance = abs(change.after_index - truth[change.series])
            if step and distance <= 1 and change.series not in found:
                found.add(change.series)
                exact += distance == 0
                near += 1
            else:
                false += 1
        rate = f"{len(found)}/{args.series}" if step else "—"
        exact_text = f"{exact}/{args.series}" if step else "—"
        near_text = f"{near}/{args.series}" if step else "—"
        print(f"| {step:.0%} | {rate} | {exact_text} | {near_text} | {false} | {seconds:.1f} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
