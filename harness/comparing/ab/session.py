"""``bench ab``: measure a baseline and a candidate in alternating rounds on one machine.

Measuring one side after the other cannot tell a slower candidate from a machine that changed
in between (a neighbour started, the clock dropped). Here both sides' workers
(:mod:`harness.comparing.ab.sides`) are up at once and take turns: in each of ``rounds`` rounds,
every run's every mode is measured as one block on each side, the order alternating from round to
round (AB, BA, AB, ...) as asv does, so that a drift of the machine hits both sides alike and
neither is always first. Only one side measures at any moment; the other waits on its pipe. Both
workers are pinned to the same CPUs: on a virtual machine two vCPUs can differ by a third in speed
for seconds at a time, and two processes left to the scheduler each settle on one.

Every round starts a fresh worker per side, as asv runs each round in a new process: the same
code in two long-lived processes can time several percent apart for as long as they live (on
this project's VM, same-code pairs at batch 8 read from -7% to +7%, every round of a pair
leaning the same way), so the rounds of one pair of processes are not independent samples of
"baseline against candidate", and their paired test would call the same code a regression.
A fresh pair per round makes each round's ratio an independent draw of that process effect too.

Each side plans the suite with its own code and plugins (in the first round's workers); the
plans must name the same runs. The outcome is two ordinary results files,
``<out>/baseline/results.json`` and ``<out>/candidate/results.json``, whose timing records keep
each round's sample count and contention (``rounds``, :mod:`harness.comparing.ab.rounds`), and which
share ``execution.interleaved.session``: ``bench compare`` then pairs the rounds
(:func:`harness.comparing.verdicts.paired_time_evidence`), as this command does.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from harness.comparing.ab.rounds import ROLES, RunPair
from harness.comparing.ab.sides import Side, WorkerDied, WorkerProcess, close_workers
from harness.comparing.matching import Comparison, compare_files
from harness.comparing.verdicts import ALPHA, MIN_ROUNDS, Rules
from harness.errors import BenchError
from harness.execution.interrupts import Terminated, sigterm_as_interrupt
from harness.execution.log_progress import LogBar
from harness.measuring.affinity import pinned_cpus
from harness.planning.overrides import Overrides
from harness.planning.suite_files import Run
from harness.reporting.tables import plural
from harness.results.store import RESULTS_NAME, ResultsStore


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
    log: bool = False,
    min_rounds: int = MIN_ROUNDS,
) -> Outcome:
    """Start both workers, plan, measure every run in alternating rounds, write both results
    files and compare them. ``progress`` draws a bar; ``log`` prints a line per measured round
    instead (a piped output, such as a CI log). ``min_rounds``: fewer is refused (the paired
    test's least; one where only counters are judged, which are exact)."""
    if session.rounds < min_rounds:
        raise BenchError(
            f"--rounds {session.rounds}: at least {MIN_ROUNDS} are needed for the paired test "
            f"to reach p < {ALPHA}"
        )
    for role in ROLES:
        if (out_dir / role / RESULTS_NAME).exists():
            raise BenchError(
                f"{out_dir / role / RESULTS_NAME} already exists; choose another --out"
            )
    if session.cpus is None:
        session = replace(session, cpus=pinned_cpus("auto", session.threads))
    workers = _start_workers(session, out_dir)
    stores: dict[str, ResultsStore] = {}
    try:
        hellos = {role: worker.handshake(session.device) for role, worker in workers.items()}
        runs, header = _plans(session, workers)
        for role in ROLES:
            stores[role] = _create_store(session, out_dir / role, role, header, hellos[role])
        with sigterm_as_interrupt():
            _measure_all(session, out_dir, workers, stores, runs, progress, log)
    except KeyboardInterrupt as exc:
        signal_name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        for store in stores.values():
            store.finish(
                "interrupted", f"interrupted by {signal_name}: {plural(len(store.runs), 'run')}"
            )
        raise SessionInterrupted(signal_name, out_dir) from None
    finally:
        close_workers(workers.values())
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
            "workers": "a fresh process per side in every round",
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
    out_dir: Path,
    first: dict[str, WorkerProcess],
    stores: dict[str, ResultsStore],
    runs: list[tuple[Run, Run]],
    progress: bool,
    log: bool,
) -> None:
    """Every round in its own pair of workers (the first round in ``first``, which planned),
    every run in each round. Whatever whole rounds were measured are recorded, even when
    interrupted; a run that failed on a side is recorded as failed and not measured again."""
    pairs = [RunPair.of(baseline, candidate) for baseline, candidate in runs]
    total = len(pairs) * session.rounds
    try:
        bar = (
            LogBar(total, "bench ab")
            if log and not progress
            else tqdm(total=total, desc="bench ab", unit="round", disable=not progress)
        )
        with bar:
            for index in range(session.rounds):
                if index and all(pair.failures for pair in pairs):
                    break  # nothing left to measure: start no more workers
                workers = first if index == 0 else _start_workers(session, out_dir)
                try:
                    for pair in pairs:
                        bar.set_postfix_str(f"{pair.name}, round {index + 1}")
                        if not pair.failures:
                            _measure_round(workers, pair, index)
                        bar.update(1)
                finally:
                    close_workers(workers.values())
    finally:
        for pair in pairs:
            if pair.rounds or pair.failures:
                for role, store in stores.items():
                    store.add(pair.record(role))


def _start_workers(session: Session, out_dir: Path) -> dict[str, WorkerProcess]:
    """A fresh worker per side, both starting (importing torch, loading plugins) at once,
    before either measures; each round's log follows the last in ``<out>/<side>/worker.log``."""
    sides = {"baseline": session.baseline, "candidate": session.candidate}
    return {
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


def _measure_round(workers: dict[str, WorkerProcess], pair: RunPair, index: int) -> None:
    """One round of one run: each side prepares it, then every mode is one block on each
    side, the baseline first in even rounds. A side's failure is recorded on that side and
    the round discarded."""
    pair.begin_round()
    for role in ROLES:  # both, so that each side's own failure is recorded
        run = _run_spec(pair.runs[role])
        reply = _safe_request(workers[role], "prepare", run=run, flops=role not in pair.facts)
        if "error" in reply:
            pair.failures[role] = reply
        else:
            pair.facts.setdefault(role, reply["facts"])
    if pair.failures:
        return
    order = ROLES if index % 2 == 0 else ROLES[::-1]
    blocks: dict[str, dict[str, dict]] = {role: {} for role in ROLES}
    for mode in pair.modes:
        for role in order:
            reply = _safe_request(workers[role], "measure", mode=mode)
            if "error" in reply:
                pair.failures[role] = reply
                return
            blocks[role][mode] = reply["record"]
    pair.add_round(blocks)


def _safe_request(worker: WorkerProcess, op: str, **fields: Any) -> dict[str, Any]:
    """The worker's reply, or an error reply if the worker died."""
    try:
        return worker.request(op, **fields)
    except WorkerDied as exc:
        return {"error": str(exc), "status": "failed"}


def _run_spec(run: Run) -> dict[str, Any]:
    return {"index": run.index, "procedure": run.procedure, "config": run.config}
