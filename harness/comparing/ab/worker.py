"""``bench ab``'s worker: one side's code, measuring only when the parent asks.

:mod:`harness.comparing.ab.session` starts one worker per side with that side's interpreter and
import path (``python -m harness.comparing.ab.worker --threads N [--plugin P]...``), so each side
measures with its own bench, plugins and torch. The two never run at once: while one measures, the
other waits on its pipe. The protocol is one JSON object per line each way, on the worker's stdin
and the
stdout it had at start (whatever the code under test prints goes to stderr, the log):

- ``{"op": "hello", "device"}`` -> ``{"protocol", "bench_version", "environment",
  "bench_location", "plugin_failures"}``
- ``{"op": "plan", "suite", "overrides", "default_name"}`` -> ``{"suite": header, "runs"}``, the
  side's own plan of a timing suite (:func:`harness.measuring.workload.timing_suite`)
- ``{"op": "prepare", "run", "flops"}`` -> ``{"facts"}``: builds the run's model and batch once;
  ``"flops": false`` skips counting FLOPs (1.5 s in a fresh process: it imports torch._dynamo),
  which a session needs only once per run
- ``{"op": "measure", "mode"}`` -> ``{"record"}``: one block of the run's ``loop`` settings
  through :func:`harness.measuring.timer.measure`, contention evidence included; the first block of
  each mode after ``prepare`` warms up for at least :data:`FIRST_WARMUP_S` seconds more (an
  ``epoch``, which has no warm-up, is run once unrecorded first)

Failures answer ``{"error", "status", "traceback"}`` (``"usage": true`` for a bad suite or
option) and the worker carries on; end of input ends it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import torch

import harness
from harness import __version__
from harness.data import DataContext
from harness.devices import resolve_device
from harness.errors import BenchError
from harness.execution.outcome import failure
from harness.measuring.timer import LoopSettings, measure
from harness.measuring.workload import Prepared, prepare, threads_set, timing_suite
from harness.planning.overrides import Overrides
from harness.planning.protocol import RunContext
from harness.planning.suite_files import Run
from harness.registry.loading import load_plugins
from harness.results.environment import capture_environment
from harness.training.steps import check_datasets

PROTOCOL = 1
FIRST_WARMUP_S = 0.25


class Worker:
    """The state between requests: the registry, and the one run prepared at a time."""

    def __init__(self, plugins: list[str], data_root: Path | None, out_dir: Path):
        loaded = load_plugins(plugins)
        self.failures = [f"{f.name} ({f.source}): {f.error}" for f in loaded.failures]
        self.registry = loaded.registry
        self.data = DataContext(data_root=data_root)
        self.out_dir = out_dir
        self.run: Run | None = None
        self.prepared: Prepared | None = None
        self.warmed: set[str] = set()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            return {"error": f"unknown request {op!r}", "status": "failed"}
        try:
            return handler(request)
        except BenchError as exc:
            return {"error": str(exc), "status": "failed", "usage": True}
        except (Exception, SystemExit) as exc:
            status, error, trace = failure(exc)
            return {"error": error, "status": status, "traceback": trace}

    def op_hello(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL,
            "bench_version": __version__,
            "environment": capture_environment(resolve_device(request.get("device", "auto"))),
            "bench_location": str(Path(harness.__file__).parent),
            "plugin_failures": self.failures,
        }

    def op_plan(self, request: dict[str, Any]) -> dict[str, Any]:
        overrides = Overrides(**request["overrides"])
        suite = timing_suite(request["suite"], overrides, self.registry, request["default_name"])
        check_datasets(suite, self.registry, self.data)
        runs = self.registry.procedures.get(suite.procedure).plan(suite, self.registry)
        return {
            "suite": suite.header(),
            "runs": [
                {"index": r.index, "procedure": r.procedure, "config": r.config} for r in runs
            ],
        }

    def op_prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        self.prepared, self.warmed = None, set()
        spec = request["run"]
        self.run = Run(spec["index"], spec["procedure"], spec["config"])
        ctx = RunContext(
            registry=self.registry, device=torch.device("cpu"), data=self.data, out_dir=self.out_dir
        )
        with threads_set(self.run.config.get("threads", 0)):
            self.prepared = prepare(self.run, ctx, count_flops=request.get("flops", True))
        return {"facts": self.prepared.facts}

    def op_measure(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.prepared is None or self.run is None:
            return {"error": "measure before prepare", "status": "failed"}
        mode = request["mode"]
        loop = LoopSettings(**self.run.config["loop"])
        first = mode not in self.warmed
        self.warmed.add(mode)
        if first:
            loop = replace(loop, warmup_time=max(loop.warmup_time, FIRST_WARMUP_S))
        with threads_set(self.run.config.get("threads", 0)):
            if first and mode == "epoch":  # an epoch has no warm-up of its own: run one first
                self._measure(mode, loop)
            return {"record": self._measure(mode, loop)}

    def _measure(self, mode: str, loop: LoopSettings) -> dict[str, Any]:
        prepared = self.prepared
        records = measure(
            prepared.workload, [mode], loop, flops=prepared.flops, epoch_split=prepared.epoch_split
        )
        return records[mode]


def serve(worker: Worker, requests: IO[str], replies: IO[str]) -> None:
    for line in requests:
        if line.strip():
            reply = worker.handle(json.loads(line))
            replies.write(json.dumps(reply, default=str) + "\n")
            replies.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m harness.comparing.ab.worker", description=__doc__
    )
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--cpus", help="comma-separated CPUs to run on (both sides get the same)")
    parser.add_argument("--plugin", action="append", default=[])
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # prints of the code under test: the log
    if args.cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    torch.set_num_threads(args.threads)
    worker = Worker(args.plugin, args.data_root, args.out)
    serve(worker, sys.stdin, replies)
    # Nothing is left to save, and tearing the interpreter down with torch loaded takes about a
    # second, which a session that starts fresh workers every round would wait for each time.
    sys.stderr.flush()
    replies.close()
    os._exit(0)


if __name__ == "__main__":
    main()
