"""Counters: are they the same every time, do they catch what they should, and what do they cost?

Three parts, each a markdown table with the threads and load average beside it:

- ``reruns``: every built-in model as ``bench time`` prepares it (its default dataset, or
  mnist-5k for the models that reconstruct pixels and wti for the sequence models; batch 2,
  one thread): the counters of its
  ``forward`` and ``train_step`` read 50 times in this process, and once in a fresh process
  (``bench time`` itself); "identical" means all 51 equal.
- ``cost``: what counting costs, against the timing block it follows: the seconds of one
  ``count_step`` against one step's median and against the whole timed block of ``bench time``'s
  default loop (warm-up 1, at least 5 samples and 1 s).
- ``changes``: a plugin model given each change a commit might make (an extra operator per
  forward, an extra temporary tensor, a graph break under ``torch.compile``), measured and
  compared with the unchanged model by ``bench compare``'s rules in every step mode: how many of
  the changed counters were flagged as regressions; then the unchanged model measured 101 times
  and each measurement compared with the next: how many counters were flagged.

A benchmark, not a test: it never fails. From the repository root:

    python benchmarks/counters.py [--part reruns|cost|changes|all] [--reruns 50]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.devices import cpu_model

MODES = ("forward", "train_step")
BATCH = 2
# where synthetic data will not do: models that reconstruct [0, 1] pixels, and sequence models,
# listed for the regression task first (bench time refuses to time them as classifiers)
DATASETS = {"autoencoder": "mnist-5k", "conv-autoencoder": "mnist-5k", "vae": "mnist-5k",
            "rnn": "wti", "lstm": "wti", "gru": "wti"}  # fmt: skip


def _header() -> None:
    load = os.getloadavg()[0]
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, one thread; "
          f"load average before {load:.2f}\n")  # fmt: skip


def _prepared(model: str) -> Any:
    from harness.measuring.workload import prepare
    from harness.planning.protocol import RunContext
    from harness.planning.suite_files import parse_suite
    from harness.registry.loading import load_plugins

    registry = load_plugins().registry
    procedure = registry.procedures.get("throughput")
    document = {
        "procedure": "throughput",
        "models": [model],
        "datasets": [DATASETS.get(model, procedure.default_datasets[0])],
        "throughput": {"batch_sizes": [BATCH], "modes": list(MODES), "devices": ["cpu"]},
    }
    suite = parse_suite(document, registry, source="benchmark")
    (run,) = procedure.plan(suite, registry)
    return prepare(run, RunContext(registry=registry, device=torch.device("cpu")))


def _counted(prepared: Any, mode: str) -> dict[str, Any]:
    from harness.measuring.counters import count_step

    step = prepared.workload.step(mode)
    step()  # as after the timed block: warm
    flops = prepared.flops.get("forward" if mode == "forward" else "train_step")
    return count_step(step, prepared.workload.device, flops=flops)


def _fresh_process(model: str, out: Path) -> dict[str, dict[str, Any]]:
    """The counters ``bench time`` records for the model, in a process of its own."""
    dataset = ["--dataset", DATASETS[model]] if model in DATASETS else []
    command = [sys.executable, "-m", "harness", "time", "--model", model, *dataset, "--batch-size",
               str(BATCH), *[f"--mode={m}" for m in MODES], "--threads", "1", "--quick",
               "--device", "cpu", "-q", "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    return {mode: run["metrics"][mode]["counters"] for mode in MODES}


def reruns_part(args: argparse.Namespace, scratch: Path) -> None:
    from harness.registry.loading import load_plugins

    print(
        f"## Counters of each built-in model, {args.reruns} reruns in process + 1 fresh process\n"
    )
    print("| model | mode | operators | allocations | bytes | FLOPs | identical |")
    print("|---|---|---|---|---|---|---|")
    models = load_plugins().registry.models.names()
    for model in models[models.index(args.start_at) if args.start_at else 0 :]:
        prepared = _prepared(model)
        fresh = _fresh_process(model, scratch / f"fresh-{model}")
        for mode in MODES:
            counts = [_counted(prepared, mode) for _ in range(args.reruns)]
            same = all(c == counts[0] for c in counts) and fresh[mode] == counts[0]
            c, runs = counts[0], args.reruns + 1
            print(f"| {model} | {mode} | {c['operators']:,} | {c['allocations']:,} | "
                  f"{c['allocated_bytes']:,} | {c.get('flops', 0):,} | "
                  f"{f'{runs}/{runs}' if same else 'NO'} |", flush=True)  # fmt: skip


def cost_part(args: argparse.Namespace) -> None:
    from harness.measuring.timer import LoopSettings, cpu_timer, run_loop

    print("\n## What counting costs, against the timed block it follows\n")
    print("| model | mode | one step (median) | timed block | counting | counting / step |")
    print("|---|---|---|---|---|---|")
    for model in ("mlp", "lenet5", "lstm", "resnet18"):
        prepared = _prepared(model)
        for mode in MODES:
            step = prepared.workload.step(mode)
            began = time.perf_counter()
            timing = run_loop(step, LoopSettings(), cpu_timer())
            block = time.perf_counter() - began
            began = time.perf_counter()
            _counted(prepared, mode)
            counting = time.perf_counter() - began
            median = timing.summary.median
            print(f"| {model} | {mode} | {1e3 * median:.2f} ms | {block:.2f} s | "
                  f"{1e3 * counting:.1f} ms | {counting / median:.1f} |", flush=True)  # fmt: skip


class Net(nn.Module):
    """A plugin's model, with one of the changes a commit might make to it."""

    def __init__(self, change: str | None = None):
        super().__init__()
        self.change = change
        self.hidden, self.out = nn.Linear(64, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = self.hidden(x)
        x = x.relu() if self.change == "allocation" else x.relu_()
        if self.change == "operator":
            x = x * 1.0
        if self.change == "graph break":
            torch._dynamo.graph_break()
        return self.out(x)


CHANGES = {  # the change, the counters it changes, and whether it needs torch.compile
    "operator": (("operators",), False),
    "allocation": (("allocations", "allocated_bytes"), False),
    "graph break": (("graph_breaks",), True),
}


def measured(change: str | None = None, compile: bool = False) -> dict[str, Any]:
    """:class:`Net` given ``change``, measured in every step mode (its records, counters in)."""
    from bench_plugins.tasks.supervised import CLASSIFICATION

    from harness.measuring.timer import LoopSettings, Workload, measure
    from harness.tasks import DataInfo

    torch.manual_seed(0)
    workload = Workload.prepare(Net(change), torch.randn(32, 64), torch.randint(0, 10, (32,)),
                                torch.device("cpu"), task=CLASSIFICATION,
                                info=DataInfo(num_outputs=10), compile=compile)  # fmt: skip
    loop = LoopSettings(warmup=1, repeats=3, min_time=0.0, min_repeats=1)
    modes = ("forward", "forward_backward", "train_step")
    return measure(workload, modes, loop, flops={"forward": 1, "train_step": 3})


def results_file(directory: Path, metrics: dict[str, Any]) -> Path:
    """A complete results file in ``directory`` of one run of :class:`Net` with ``metrics``."""
    from harness.results.store import ResultsStore

    suite = {"name": "counted", "procedure": "throughput"}
    store = ResultsStore.create(directory / "results.json", command=[], suite=suite, environment={})
    run = {"id": "000-net", "hash": "h", "procedure": "throughput", "status": "ok"}
    store.add({"index": 0, **run, "config": {"name": "net-s0", "seed": 0}, "metrics": metrics})
    store.finish("complete")
    return directory


def _counter_verdicts(base: dict[str, Any], cand: dict[str, Any], scratch: Path) -> dict:
    from harness.comparing.matching import compare_files
    from harness.comparing.verdicts import COUNT, Rules

    paths = [results_file(Path(tempfile.mkdtemp(dir=scratch, prefix=side)), metrics)
             for side, metrics in (("base", base), ("cand", cand))]  # fmt: skip
    rows = compare_files(*paths, Rules()).rows
    return {row.metric: row.verdict for row in rows if row.kind == COUNT}


def changes_part(args: argparse.Namespace, scratch: Path) -> None:
    from harness.comparing.verdicts import REGRESSION

    print("\n## Injected changes, and the same code compared with itself\n")
    print("| change | counters that must regress (3 modes) | flagged |")
    print("|---|---|---|")
    for change, (counters, compile) in CHANGES.items():
        verdicts = _counter_verdicts(measured(None, compile), measured(change, compile), scratch)
        wanted = [f"{mode}.{c}" for mode in ("forward", "forward_backward", "train_step")
                  for c in counters]  # fmt: skip
        flagged = sum(verdicts.get(name) == REGRESSION for name in wanted)
        print(f"| {change} | {', '.join(counters)} | {flagged}/{len(wanted)} |", flush=True)
    sides = [measured(None, False) for _ in range(args.comparisons + 1)]
    flags = total = 0
    for a, b in zip(sides, sides[1:], strict=False):
        verdicts = _counter_verdicts(a, b, scratch)
        total += len(verdicts)
        flags += sum(v != "ok" for v in verdicts.values())
    print(f"\nThe same code, {args.comparisons} comparisons: {flags} of {total} counter verdicts "
          "other than ok.")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("reruns", "cost", "changes", "all"), default="all")
    parser.add_argument("--reruns", type=int, default=50)
    parser.add_argument("--comparisons", type=int, default=100)
    parser.add_argument("--start-at", metavar="MODEL", help="reruns: begin with this model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _header()
    with tempfile.TemporaryDirectory(prefix="bench-counters-") as scratch:
        if args.part in ("reruns", "all"):
            reruns_part(args, Path(scratch))
        if args.part in ("cost", "all"):
            cost_part(args)
        if args.part in ("changes", "all"):
            changes_part(args, Path(scratch))
    print(f"\nload average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
