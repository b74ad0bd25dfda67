"""``bench ab``: measure a baseline and a candidate in alternating rounds on one machine.

Measuring one side after the other cannot tell a slower candidate from a machine that changed
in between (a neighbour started, the clock dropped). Here both sides' workers
(:mod:`harness.sides`) are up at once and take turns: for each run, in each of ``rounds``
rounds, every mode is measured as one block on each side, the order alternating from round to
round (AB, BA, AB, ...) as asv does, so that a drift of the machine hits both sides alike and
neither is always first. Only one side measures at any moment; the other waits on its pipe.
Both workers are pinned to the same CPUs: on a virtual machine two vCPUs can differ by a third
in speed for seconds at a time, and two processes left to the scheduler each settle on one.

Each side plans the suite with its own code and plugins; the plans must name the same runs.
The outcome is two ordinary results files, ``<out>/baseline/results.json`` and
``<out>/candidate/results.json``, whose timing records keep each round's sample count and
contention (``rounds``), and which share ``execution.interleaved.session``: ``bench compare``
then pairs the rounds (:func:`harness.verdicts.paired_time_evidence`), as this command does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from harness.compare import Comparison, compare_files
from harness.contention import summarize_records
from harness.execution import make_record
from harness.interrupts import Terminated, sigterm_as_interrupt
from harness.options import BenchError
from harness.results import RESULTS_NAME, ResultsStore, now
from harness.sides import Side, WorkerDied, WorkerProcess, pinned_cpus
from harness.suite_overrides import Overrides
from harness.suites import Run
from harness.timing import Timing, rates
from harness.verdicts import ALPHA, MIN_ROUNDS, Rules

ROLES = ("baseline", "candidate")


@dataclass(frozen=True)
class Session:
    """What one ``bench ab`` invocation measures, and how."""

    baseline: Side
    candidate: Side
    suite: str | None  # a timing suite's name or path, or None for the overrides' models
    overrides: Overrides
    default_name: str
    rounds: int = 20
    round_time: float = 0.05  # seconds of samples per side, mode and round, at least
    max_round_time: float = 2.0  # ... at most (there is always one sample)
    threads: int = 1
    device: str = "auto"
    # both workers on these CPUs, so that neither gets a faster core: None = the last
    # ``threads`` usable ones, () = wherever the kernel likes
    cpus: tuple[int, ...] | None = None
    plugins: tuple[str, ...] = ()
    data_root: Path | None = None
    command: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def suite_overrides(self) -> Overrides:
        """The overrides with this session's round, thread and device settings, which replace
        the suite's own loop settings: each block is one round of one side."""
        rounds = {
            "warmup": 1,
            "warmup_time": 0.0,
            "repeats": 1,
            "min_time": self.round_time,
            "max_time": self.max_round_time,
            "threads": self.threads,
            "devices": (self.device,),
        }
        return replace(self.overrides, settings={**self.overrides.settings, **rounds})


@dataclass
class Outcome:
    comparison: Comparison
    out_dir: Path
    stores: dict[str, ResultsStore]
    warnings: list[str] = field(default_factory=list)  # e.g. a side's plugin that failed


class SessionInterrupted(KeyboardInterrupt):
    def __init__(self, signal_name: str, out_dir: Path):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.out_dir = out_dir


def run_session(
    session: Session,
    out_dir: Path,
    rules: Rules,
    *,
    progress: bool = False,
) -> Outcome:
    """Start both workers, plan, measure every run in alternating rounds, write both results
    files and compare them."""
    if session.rounds < MIN_ROUNDS:
        raise BenchError(
            f"--rounds {session.rounds}: at least {MIN_ROUNDS} are needed for the paired test "
            f"to reach p < {ALPHA}"
        )
    for role in ROLES:
        if (out_dir / role / RESULTS_NAME).exists():
            raise BenchError(
                f"{out_dir / role / RESULTS_NAME} already exists; choose another --out"
            )
    sides = {"baseline": session.baseline, "candidate": session.candidate}
    if session.cpus is None:
        session = replace(session, cpus=pinned_cpus("auto", session.threads))
    workers = {
        role: WorkerProcess.start(
            side,
            session.threads,
            list(session.plugins),
            out_dir / role / "worker.log",
            session.data_root,
            session.cpus,
        )
        for role, side in sides.items()
    }
    stores: dict[str, ResultsStore] = {}
    try:
        hellos = {role: worker.handshake(session.device) for role, worker in workers.items()}
        runs, header = _plans(session, workers)
        for role in ROLES:
            stores[role] = _create_store(session, out_dir / role, role, header, hellos[role])
        with sigterm_as_interrupt():
            _measure_all(session, workers, stores, runs, progress)
    except KeyboardInterrupt as exc:
        signal_name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        for store in stores.values():
            store.finish("interrupted", f"interrupted by {signal_name}: {len(store.runs)} runs")
        raise SessionInterrupted(signal_name, out_dir) from None
    finally:
        for worker in workers.values():
            worker.close()
    for store in stores.values():
        store.finish("complete")
    comparison = compare_files(stores["baseline"].path, stores["candidate"].path, rules)
    warnings = [
        f"{role}: plugin {failure} failed to load"
        for role, hello in hellos.items()
        for failure in hello.get("plugin_failures", [])
    ]
    return Outcome(comparison, out_dir, stores, warnings)


def _plans(
    session: Session, workers: dict[str, WorkerProcess]
) -> tuple[list[tuple[Run, Run]], dict[str, Any]]:
    """Each side's plan; they must list the same runs (by name), in the same order."""
    request = {
        "suite": session.suite,
        "overrides": asdict(session.suite_overrides()),
        "default_name": session.default_name,
    }
    plans = {}
    for role, worker in workers.items():
        reply = _safe_request(worker, "plan", **request)
        if "error" in reply:
            raise BenchError(f"{role} ({worker.side.spec}): {reply['error']}")
        plans[role] = reply
    names = {role: [r["config"]["name"] for r in plan["runs"]] for role, plan in plans.items()}
    if names["baseline"] != names["candidate"]:
        only = {
            role: ", ".join(sorted(set(names[role]) - set(names[other]))) or "nothing else"
            for role, other in (("baseline", "candidate"), ("candidate", "baseline"))
        }
        raise BenchError(
            f"the two sides plan different runs: only the baseline plans {only['baseline']}; "
            f"only the candidate {only['candidate']}"
        )
    runs = {
        role: [Run(r["index"], r["procedure"], r["config"]) for r in plan["runs"]]
        for role, plan in plans.items()
    }
    return list(zip(runs["baseline"], runs["candidate"], strict=True)), plans["baseline"]["suite"]


def _create_store(
    session: Session, directory: Path, role: str, header: dict, hello: dict
) -> ResultsStore:
    side = session.baseline if role == "baseline" else session.candidate
    # the worker runs in the output folder: its own idea of the checkout is not the side's
    environment = {**hello["environment"], "git_commit": side.commit}
    execution = {
        "device": environment.get("device"),
        "threads": session.threads,
        "cpus": list(session.cpus or ()),
        "plugins": [*session.plugins, *side.plugins],
        "interleaved": {
            "session": session.id,
            "side": role,
            "spec": side.spec,
            "bench": hello.get("bench_location"),
            "rounds": session.rounds,
            "round_time": session.round_time,
            "order": "alternating: baseline first in even rounds, candidate first in odd",
        },
    }
    return ResultsStore.create(
        directory / RESULTS_NAME,
        command=session.command,
        suite=header,
        environment=environment,
        execution=execution,
    )


def _measure_all(
    session: Session,
    workers: dict[str, WorkerProcess],
    stores: dict[str, ResultsStore],
    runs: list[tuple[Run, Run]],
    progress: bool,
) -> None:
    total = len(runs) * session.rounds
    with tqdm(total=total, desc="bench ab", unit="round", disable=not progress) as bar:
        for pair in runs:
            bar.set_postfix_str(pair[0].name)
            done = bar.n
            records = _measure_pair(session, workers, pair, bar.update)
            bar.update(done + session.rounds - bar.n)  # the rounds a failure skipped
            for role, store in stores.items():
                store.add(records[role])


def _measure_pair(
    session: Session,
    workers: dict[str, WorkerProcess],
    pair: tuple[Run, Run],
    advance: Callable[[int], Any],
) -> dict[str, dict[str, Any]]:
    """One run on both sides: prepare, then the rounds; a side's failure stops the pair and is
    recorded on that side (its counterpart is recorded as not measured)."""
    started = {role: now() for role in ROLES}
    runs = dict(zip(ROLES, pair, strict=True))
    facts, failures = {}, {}
    for role in ROLES:
        reply = _safe_request(workers[role], "prepare", run=_run_spec(runs[role]))
        if "error" in reply:
            failures[role] = reply
        else:
            facts[role] = reply["facts"]
    modes = pair[0].config["modes"]
    blocks: dict[str, dict[str, list]] = {role: {m: [] for m in modes} for role in ROLES}
    for index in range(session.rounds if not failures else 0):
        order = ROLES if index % 2 == 0 else ROLES[::-1]
        for mode in modes:
            for role in order:
                reply = _safe_request(workers[role], "measure", mode=mode)
                if "error" in reply:
                    failures[role] = reply
                    break
                blocks[role][mode].append(reply["record"])
            if failures:
                break
        if failures:
            break
        advance(1)
    return {
        role: _record(runs[role], role, facts, blocks[role], failures, started[role])
        for role in ROLES
    }


def _safe_request(worker: WorkerProcess, op: str, **fields: Any) -> dict[str, Any]:
    """The worker's reply, or an error reply if the worker died."""
    try:
        return worker.request(op, **fields)
    except WorkerDied as exc:
        return {"error": str(exc), "status": "failed"}


def _run_spec(run: Run) -> dict[str, Any]:
    return {"index": run.index, "procedure": run.procedure, "config": run.config}


def _record(
    run: Run,
    role: str,
    facts: dict[str, dict],
    blocks: dict[str, list[dict]],
    failures: dict[str, dict],
    started: str,
) -> dict[str, Any]:
    if failures:
        other = next(r for r in ROLES if r != role)
        reply = failures.get(role) or {
            "status": "failed",
            "error": f"not measured: the {other} failed ({failures[other].get('error')})",
        }
        return make_record(
            run,
            status=reply.get("status", "failed"),
            error=reply.get("error"),
            traceback=reply.get("traceback"),
            started_at=started,
            wall_time_s=0.0,
        )
    metrics = dict(facts[role])
    for mode, records in blocks.items():
        metrics[mode] = merge_blocks(mode, records, metrics)
    seconds = sum(r["warmup_s"] + sum(r["samples"]) for rs in blocks.values() for r in rs)
    return make_record(run, status="ok", metrics=metrics, started_at=started, wall_time_s=seconds)


def merge_blocks(mode: str, blocks: list[dict[str, Any]], facts: dict[str, Any]) -> dict[str, Any]:
    """One timing record of a side's blocks of ``mode``: their samples in order, statistics
    over all of them, the rounds (sample count, median, contention) and, as in any timing
    record, samples/s, FLOP/s, peak memory and contention."""
    samples = [x for block in blocks for x in block["samples"]]
    timing = Timing(
        samples,
        warmup_iterations=sum(b["warmup_iterations"] for b in blocks),
        warmup_seconds=sum(b["warmup_s"] for b in blocks),
        capped=any(b["capped"] for b in blocks),
    )
    first = blocks[0]
    if mode == "epoch":
        extra = {"split_size": first["split_size"], "amp": first.get("amp")}
        speed = rates(timing, first["split_size"])
    else:
        batch, extra = facts["batch_size"], {}
        flops = facts["flops_per_sample"].get("forward" if mode == "forward" else "train_step")
        speed = rates(timing, batch, flops * batch if flops is not None else None)
    return {
        **timing.to_dict(),
        **speed,
        **extra,
        "memory": _peak([b["memory"] for b in blocks]),
        "contention": summarize_records([b["contention"] for b in blocks]),
        "rounds": [
            {
                "n": len(b["samples"]),
                "median": b["median"],
                "contended": bool(b["contention"].get("contended")),
                "evidence": b["contention"].get("evidence", ""),
            }
            for b in blocks
        ],
    }


def _peak(memories: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest of each figure over the blocks (peaks are reset for every block)."""
    merged = dict(memories[0])
    for memory in memories[1:]:
        for key, value in memory.items():
            if isinstance(value, (int, float)) and isinstance(merged.get(key), (int, float)):
                merged[key] = max(merged[key], value)
    return merged
