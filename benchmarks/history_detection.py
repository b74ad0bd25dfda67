"""How well ``bench history detect`` finds, places and sizes changes in performance histories.

Three tables, each of series detected in one call per row, as ``bench history detect`` would
test them. A benchmark, not a test: it never fails (``tests/test_history.py`` checks the goals
on smaller seeded runs of the same code). From the repository root:

    python benchmarks/history_detection.py [--table cases|real|few] [--record] [--series 100]
        [--commits 60] [--runs-per-commit 8] [--steps 0,0.1] [--sample DIR]

``--table cases`` (the default): the cases the detector was checked on against Apache Otava
0.8.0, on generated histories: 60 commits of 8 samples each, every sample its commit's level
times 1 + N(0, 3%) (``--noise``), ``--series`` series per case (default 10): no change; +8%
at commit 20; +8% at 20 back to the baseline at 30 (-7.4%); +8% at 20 then -5% at 45. Per
change: the series where it was found at its commit and within one commit, and how far the
reported size was from the true one (mean and worst, in points of percent); per case, the
change points found more than one commit from any true change (false). Goals: each change of
the step-and-return and two-steps cases found in 9 of 10 series, sizes within 1 point, no false
change point.

``--table real``: steps on real noise. ``--record`` measures real forward timings on this
machine and saves them to ``benchmarks/data/timing-noise.json``: ``--processes`` separate
processes (as separate CI runs would be), each timing LeNet-5's forward pass on a batch of 64,
one torch thread, in ``--blocks`` blocks, each measured as the throughput suite measures a mode
(warm-up 1 and 0.2 s, then samples until 5 of them and 0.5 s) with a fresh model and batch, as
a fresh run would have. Without ``--record`` the saved noise is used, so the figures can be made
again. Each series has ``--commits`` commits; each commit pools ``--runs-per-commit`` recorded
blocks at random (without replacement, from any process: the run-to-run variation is real), and
from a random commit between the 10th and the 10th from last every sample is multiplied by
1 + step. Per step size (0: step-free series): the series whose step was found, at its commit
and within one, and the change points found elsewhere (false).

``--table few``: how few commits suffice, on the same real noise: a step after the commits
before it, followed by only 2, 3 or 4 commits (a change is placed by the first commit after it,
and a side needs 2 commits), with 8 runs per commit as the CI recipe measures, and with 3.

``--sample DIR`` writes the history guide's sample dashboard (``DIR/index.html``; the guide's
picture is headless Chromium's ``--screenshot`` of it at 1280x1250) and prints its changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import mean

import numpy as np

from harness.comparing.verdicts import ACCURACY, TIME
from harness.devices import cpu_model
from harness.history.archive import Entry
from harness.history.dashboard import write_dashboard
from harness.history.detect import Detection, Series, detect

NOISE = Path(__file__).parent / "data" / "timing-noise.json"
STEPS = (0.0, 0.03, 0.05, 0.10, 0.20)
CASES = {  # name: (the first commit after a change, its relative step), on 60 commits
    "no change": (),
    "step": ((20, 0.08),),
    "step and return": ((20, 0.08), (30, 1 / 1.08 - 1)),
    "two opposite steps": ((20, 0.08), (45, -0.05)),
}
FEW = (  # commits before the step, after it, runs per commit, step
    *((12, after, 8, step) for step in (0.10, 0.20) for after in (2, 3, 4)),
    *((6, after, 3, 0.18) for after in (2, 3, 4)),
)


# --- series ------------------------------------------------------------------------------------


def levels(commits: int, changes: tuple[tuple[int, float], ...]) -> list[float]:
    """Each commit's level: 1, times 1 + step from each change's commit on."""
    return [float(np.prod([1 + step for at, step in changes if i >= at])) for i in range(commits)]


def made_series(
    name: str, samples: list[tuple[float, ...]], metric: str = "forward", kind: str = TIME,
    label: str = "lenet5",
) -> Series:  # fmt: skip
    """A series of these samples, one commit each: a forward timing unless told otherwise."""
    commits = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(len(samples))]
    entries = [Entry(c, c, None, f"2026-01-{1 + i // 24:02d}T{i % 24:02d}:00:00", "", "")
               for i, c in enumerate(commits)]  # fmt: skip
    higher_better = kind != TIME
    machine = "AMD EPYC / cpu"  # where the real noise was recorded
    return Series(name, label, label, metric, kind, higher_better, machine, entries, samples)


def gaussian(
    name: str, changes: tuple[tuple[int, float], ...], rng: np.random.Generator,
    commits: int = 60, samples: int = 8, noise: float = 0.03,
) -> Series:  # fmt: skip
    """Each commit ``samples`` samples of its level times 1 + N(0, noise)."""
    return made_series(
        name,
        [tuple(level * (1 + rng.normal(0, noise, samples))) for level in levels(commits, changes)],
    )


def from_blocks(
    name: str, changes: tuple[tuple[int, float], ...], blocks: list[list[float]], commits: int,
    runs: int, rng: np.random.Generator,
) -> Series:  # fmt: skip
    """Each commit ``runs`` real recorded blocks, drawn without replacement, scaled by its
    level."""
    chosen = rng.choice(len(blocks), size=(commits, runs), replace=False)
    return made_series(
        name,
        [
            tuple(x * level for b in row for x in blocks[b])
            for level, row in zip(levels(commits, changes), chosen, strict=True)
        ],
    )


# --- scoring -----------------------------------------------------------------------------------


@dataclass
class Score:
    """How the changes of series with known changes were found, placed and sized."""

    series: int
    exact: list[int]  # per true change: series where it was found at its commit
    near: list[int]  # ... within one commit
    errors: list[list[float]] = field(default_factory=list)  # per change: |size error|, points
    false: int = 0  # change points more than a commit from every true change


def score(detection: Detection, truth: dict[str, tuple[tuple[int, float], ...]]) -> Score:
    """Each reported change matched to the true change within one commit of it, if any."""
    width = max((len(changes) for changes in truth.values()), default=0)
    result = Score(len(truth), [0] * width, [0] * width, [[] for _ in range(width)])
    for change in detection.changes:
        matches = [
            (i, at, step)
            for i, (at, step) in enumerate(truth[change.series])
            if abs(change.after_index - at) <= 1
        ]
        if not matches:
            result.false += 1
            continue
        i, at, step = matches[0]
        result.near[i] += 1
        result.exact[i] += change.after_index == at
        result.errors[i].append(abs(change.change - step * 100))
    return result


# --- the tables --------------------------------------------------------------------------------


def cases_table(args: argparse.Namespace) -> None:
    print(f"{args.series} series per case, 60 commits of 8 samples, noise N(0, {args.noise:.0%})"
          f" per sample, seed {args.seed}\n")  # fmt: skip
    print("| case | change | found at its commit | within one | size error, mean (worst) | "
          "false change points | seconds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(args.seed)
    for name, changes in CASES.items():
        made = [gaussian(f"s{i}", changes, rng, noise=args.noise) for i in range(args.series)]
        start = time.perf_counter()
        result = score(detect(made), {one.key: changes for one in made})
        seconds = time.perf_counter() - start
        for i, (at, step) in enumerate(changes or ((None, 0.0),)):
            errors = result.errors[i] if changes else []
            size = f"{mean(errors):.2f} ({max(errors):.2f})" if errors else "—"
            print(f"| {name} | {f'{step:+.1%} at {at}' if changes else '—'} | "
                  f"{f'{result.exact[i]}/{args.series}' if changes else '—'} | "
                  f"{f'{result.near[i]}/{args.series}' if changes else '—'} | {size} | "
                  f"{result.false} | {seconds:.1f} |")  # fmt: skip


def real_table(args: argparse.Namespace, blocks: list[list[float]]) -> None:
    if args.commits * args.runs_per_commit > len(blocks):
        raise SystemExit(f"{args.commits} commits of {args.runs_per_commit} runs need more "
                         f"than the {len(blocks)} recorded blocks: --record more")  # fmt: skip
    print(f"{args.series} series of {args.commits} commits per row, each commit "
          f"{args.runs_per_commit} run(s), detected in one call each\n")  # fmt: skip
    print("| step | series whose step was found within one commit | at its commit | "
          "change points elsewhere (false) | seconds |")  # fmt: skip
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(args.seed)
    for step in (float(x) for x in args.steps.split(",")):
        truth = {}
        made = []
        for i in range(args.series):
            at = int(rng.integers(10, args.commits - 10 + 1))
            truth[f"s{i}"] = ((at, step),) if step else ()
            made.append(from_blocks(f"s{i}", truth[f"s{i}"], blocks, args.commits,
                                    args.runs_per_commit, rng))  # fmt: skip
        start = time.perf_counter()
        result = score(detect(made), truth)
        seconds = time.perf_counter() - start
        near = f"{result.near[0]}/{args.series}" if step else "—"
        exact = f"{result.exact[0]}/{args.series}" if step else "—"
        print(f"| {step:.0%} | {near} | {exact} | {result.false} | {seconds:.1f} |")


def few_table(args: argparse.Namespace, blocks: list[list[float]]) -> None:
    print(f"{args.series} series per row, each detected alone (one series tested, as in a "
          "history of one configuration)\n")  # fmt: skip
    print("| commits before | after | runs per commit | step | found within one commit | "
          "at its commit | false |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(args.seed)
    for before, after, runs, step in FEW:
        near = exact = false = 0
        for i in range(args.series):
            changes = ((before, step),)
            one = from_blocks(f"s{i}", changes, blocks, before + after, runs, rng)
            result = score(detect([one]), {one.key: changes})
            near, exact, false = (
                near + result.near[0],
                exact + result.exact[0],
                false + result.false,
            )
        print(f"| {before} | {after} | {runs} | {step:.0%} | {near}/{args.series} | "
              f"{exact}/{args.series} | {false} |")  # fmt: skip


def sample(out: Path, blocks: list[list[float]]) -> None:
    """The guide's sample dashboard: 30 commits; LeNet-5 forward at batch 1 (a quarter of the
    recorded timings) 15% slower from commit 18 and at batch 32 15% faster from commit 10, one
    run per commit; an MLP's test and validation accuracy (3 seeds a commit, 0.3 pp apart, the
    commits 0.3 pp apart) 2 pp lower from commit 22."""
    rng = np.random.default_rng(0)
    b1 = [[x / 4 for x in block] for block in blocks]
    accuracy = [0.9626 + rng.normal(0, 0.003) - 0.02 * (i >= 22) for i in range(30)]
    seeds = [tuple(a + rng.normal(0, 0.003, 3)) for a in accuracy]
    series = [
        from_blocks("b1", ((18, 0.15),), b1, 30, 1, rng),
        from_blocks("b32", ((10, -0.15),), blocks, 30, 1, rng),
        *(made_series(m, seeds, m, ACCURACY, "mlp-digits") for m in ("test_accuracy",
                                                                       "val_accuracy")),
    ]  # fmt: skip
    series[0] = replace(series[0], label="lenet5-b1")
    series[1] = replace(series[1], label="lenet5-b32")
    detection = detect(series)
    print(f"dashboard: {write_dashboard(series, detection, out)}")
    for c in detection.changes:
        print(f"{c.label} {c.metric}: {c.change:+.2f} {c.unit} at commit {c.after_index}, noise "
              f"{c.noise:.2f} {c.unit}, p {c.p_value:.1e}, q {c.q_value:.1e}")  # fmt: skip
    for quiet in detection.quiet:
        b = quiet.best
        print(f"{b.label} {b.metric}: no change point; best split at commit {b.after_index}, "
              f"{b.change:+.2f} {b.unit}, noise {b.noise:.2f} {b.unit}, p {b.p_value:.2g}, "
              f"needs {quiet.commits_needed} commits")  # fmt: skip


# --- recording real noise ----------------------------------------------------------------------


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


def recorded_blocks() -> list[list[float]]:
    noise = json.loads(NOISE.read_text())
    blocks = [block for pool in noise["processes"] for block in pool]
    sizes = sorted(len(block) for block in blocks)
    print(f"noise: {len(blocks)} blocks of {sizes[0]}-{sizes[-1]} samples, {noise['what']}, "
          f"recorded on {noise['machine']} ({noise['cpus']} CPUs), load "
          f"{noise['load_before']} -> {noise['load_after']}")  # fmt: skip
    return blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", choices=("cases", "real", "few"), default="cases")
    parser.add_argument("--sample", type=Path, help="write the guide's sample dashboard here")
    parser.add_argument("--record", action="store_true", help="measure new noise first")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--series", type=int, help="per row [default: 10 cases, 100 otherwise]")
    parser.add_argument("--noise", type=float, default=0.03, help="of --table cases' samples")
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
    args.series = args.series or (10 if args.table == "cases" else 100)
    if args.record:
        record(args.processes, args.blocks)
    if args.sample:
        sample(args.sample, recorded_blocks())
    elif args.table == "cases":
        cases_table(args)
    elif args.table == "real":
        real_table(args, recorded_blocks())
    else:
        few_table(args, recorded_blocks())
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
