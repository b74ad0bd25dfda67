"""Scheduling a suite's runs on an executor, and recording every outcome.

The scheduler starts a run once every run it ``needs`` is recorded ``ok``, sending it their
artifacts; a run whose need ended otherwise is recorded ``skipped`` with the reason. Runs marked
``exclusive`` (timings) start only when nothing else is in flight, and nothing starts beside them;
they wait until no other run can start, so they never hold the others up. Each record says
whether the run had the machine to itself (``placement.alone``).

With stacking on (:mod:`harness.execution.stacking`), a run starts together with the ready
runs of its kind, as one stacked group and one job; the group's records come back together,
and a group whose job is lost or stopped as a whole waits again, member by member, to run alone.

Only this process writes the results file: each outcome's artifacts first, then its record,
atomically, kept in plan order. A worker that was lost is retried up to ``retries`` times, and
recorded ``failed`` after that; an exception in a run is recorded by the worker and never retried.
Ctrl-C (or SIGTERM) raises :class:`Interrupted`; the caller then closes the executor, which
cancels what is in flight. What finished stays recorded for ``--resume``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm.auto import tqdm

from harness.errors import BenchError
from harness.execution.executor import Executor
from harness.execution.interrupts import Terminated
from harness.execution.jobs import Job, Outcome, WorkerLost, failed_record, needed_files
from harness.execution.log_progress import LogBar
from harness.execution.outcome import make_record
from harness.execution.stacking import Stacking
from harness.planning.suite_files import Run
from harness.results.store import ResultsStore, atomic_write, now

POLL = 0.25  # seconds between looks at the runs in flight (and progress bar refreshes)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the runs; the store says how many were recorded."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


@dataclass
class Flight:
    run: Run
    attempt: int
    alone: bool
    group: list[Run] = field(default_factory=list)  # a stacked group's members, ``run`` first


@dataclass
class Schedule:
    """The state of one invocation: what waits, what is in flight, what is recorded."""

    runs: list[Run]
    store: ResultsStore
    waiting: list[Run] = field(default_factory=list)
    flying: dict[Future, Flight] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_index = {run.index: run for run in self.runs}
        self.status = {r["hash"]: r["status"] for r in self.store.runs}  # what the store holds
        self.waiting = [run for run in self.runs if self.status.get(run.hash) != "ok"]

    def record(self, record: dict[str, Any]) -> None:
        self.status[record["hash"]] = record["status"]

    def ready(self) -> list[Run]:
        """The waiting runs whose needs are all ``ok``."""
        return [r for r in self.waiting if all(self._ok(i) for i in r.needs)]

    def startable(self) -> Run | None:
        """The first waiting run whose needs are all ``ok`` and that may start now."""
        if any(f.run.exclusive for f in self.flying.values()):
            return None
        ready = self.ready()
        shared = next((r for r in ready if not r.exclusive), None)
        if shared is not None:
            return shared
        return ready[0] if ready and not self.flying else None

    def blocked(self) -> list[tuple[Run, dict[str, Any]]]:
        """Waiting runs that can never start, each with the ``skipped`` record that says why:
        a run they need ended other than ``ok`` (in this invocation or the one resumed)."""
        pending = {r.index for r in self.waiting} | {f.run.index for f in self.flying.values()}
        found = []
        for run in self.waiting:
            for index in run.needs:
                if self._ok(index) or index in pending:
                    continue
                found.append((run, self._skipped(run, self.by_index[index])))
                break
        return found

    def needed_records(self, run: Run) -> list[dict[str, Any] | None]:
        hashes = {self.by_index[i].hash for i in run.needs}
        return [r for r in self.store.runs if r["hash"] in hashes]

    def _ok(self, index: int) -> bool:
        return self.status.get(self.by_index[index].hash) == "ok"

    def _skipped(self, run: Run, needed: Run) -> dict[str, Any]:
        record = next((r for r in self.store.runs if r["hash"] == needed.hash), None)
        status = record["status"] if record else "not recorded"
        reason = ((record or {}).get("error") or "").strip().splitlines()
        return make_record(
            run,
            status="skipped",
            error=f"not run: it needs run {needed.id}, which is {status}"
            + (f" ({reason[0]})" if reason else ""),
            started_at=now(),
            wall_time_s=0.0,
        )


def run_all(
    runs: list[Run],
    store: ResultsStore,
    executor: Executor,
    make_job: Callable[[Run, dict[str, bytes]], Job],
    *,
    retries: int = 0,
    fail_fast: bool = False,
    show: bool = False,
    log: bool = False,
    on_start: Callable[[tqdm, Run], Any] | None = None,
    stacking: Stacking | None = None,
) -> str | None:
    """Execute the runs ``store`` does not hold as ``ok``; returns ``None`` when all ran, or
    the reason they stopped early (``fail_fast``). Raises :class:`Interrupted` on Ctrl-C.
    ``show`` draws a progress bar; ``log`` prints progress as lines instead (for a piped
    output, :class:`LogBar`). ``on_start(bar, run)`` may return the run's epoch-progress
    callback. With ``stacking``, runs of one kind start together as a stacked group
    (:mod:`harness.execution.stacking`)."""
    schedule = Schedule(runs, store)
    total, name = len(schedule.waiting), store.data["suite"].get("name")
    bar = (
        LogBar(total, name)
        if log and not show
        else tqdm(total=total, desc=name, unit="run", disable=not show, file=sys.stderr)
    )
    loop = _Loop(schedule, executor, make_job, bar, on_start, retries, stacking)
    try:
        while schedule.waiting or schedule.flying:
            if not loop.stopped:
                loop.skip_blocked()
                loop.fill()
            if not schedule.flying:
                break  # nothing left that can start (or --fail-fast stopped starting more)
            done, _ = wait(list(schedule.flying), timeout=POLL, return_when=FIRST_COMPLETED)
            for future in done:
                status = loop.collect(future)
                if fail_fast and status not in (None, "ok") and not loop.stopped:
                    loop.stopped = f"run {loop.last.id} {status}"
            _show_flying(bar, schedule)
    except KeyboardInterrupt as exc:
        raise Interrupted("SIGTERM" if isinstance(exc, Terminated) else "SIGINT") from None
    finally:
        bar.close()
    if schedule.waiting and not loop.stopped:  # the plan's needs were checked: a bug if so
        raise BenchError(f"runs {', '.join(r.id for r in schedule.waiting)} could not start")
    return loop.stopped


@dataclass
class _Loop:
    """The steps of :func:`run_all`: skip what cannot run, start what can, collect what ended."""

    schedule: Schedule
    executor: Executor
    make_job: Callable[[Run, dict[str, bytes]], Job]
    bar: tqdm | LogBar
    on_start: Callable[[tqdm, Run], Any] | None
    retries: int
    stacking: Stacking | None = None
    stopped: str | None = None
    last: Run | None = None

    def skip_blocked(self) -> None:
        """Record ``skipped`` every waiting run whose need ended other than ``ok``, and then
        the runs that needed those, until none is left."""
        while blocked := self.schedule.blocked():
            for run, record in blocked:
                self.schedule.waiting.remove(run)
                _record(self.schedule, record, self.bar)

    def fill(self) -> None:
        while len(self.schedule.flying) < self.executor.slots:
            run = self.schedule.startable()
            if run is None:
                return
            group = [run]
            if self.stacking is not None and not run.exclusive:
                free = self.executor.slots - len(self.schedule.flying)
                group = self.stacking.group(run, self.schedule.ready(), free)
            for member in group:
                self.schedule.waiting.remove(member)
            self.start(group, 1)

    def start(self, group: list[Run], attempt: int) -> None:
        """Submit a run, or a stacked group (its members, the first leading); if that fails (an
        input file is gone, the executor refuses it), each is recorded ``failed`` and the others
        go on."""
        schedule, run = self.schedule, group[0]
        alone = not schedule.flying
        try:
            progress = self.on_start(self.bar, run) if self.on_start else None
            inputs = {}
            for member in group:
                records = schedule.needed_records(member)
                inputs |= needed_files(schedule.store.path.parent, records)
            job = self.make_job(run, inputs)
            if len(group) > 1:
                job = replace(job, group=tuple((r.index, r.config) for r in group))
            future = self.executor.submit(job, progress)
        except Exception as exc:
            error = f"executor error: {type(exc).__name__}: {exc}"
            for member in group:
                failed = failed_record(member, error, attempt)
                _record(schedule, {**failed, "needs": list(member.needs)}, self.bar)
            return
        for flight in schedule.flying.values():
            flight.alone = False
        schedule.flying[future] = Flight(run, attempt, alone, group if len(group) > 1 else [])

    def collect(self, future: Future[Outcome]) -> str | None:
        """Record a finished run (or each member of a group) and return its status (the
        group's worst); ``None`` when it was started again, or its group's members were sent
        back to train alone."""
        flight = self.schedule.flying.pop(future)
        run, self.last = flight.run, flight.run
        try:
            outcome = future.result()
        except WorkerLost as exc:
            if flight.group:
                return self._alone(flight, exc.reason)
            if flight.attempt <= self.retries:
                self.start([run], flight.attempt + 1)
                return None
            records = [failed_record(run, exc.reason, flight.attempt, exc.log)]
        except Exception as exc:  # the executor could not run it at all
            error = f"executor error: {type(exc).__name__}: {exc}"
            if flight.group:
                return self._alone(flight, error)
            records = [failed_record(run, error, flight.attempt)]
        else:
            if flight.group and "group" not in outcome.record:  # stopped as a whole (timeout)
                return self._alone(flight, outcome.record.get("error") or "its worker stopped")
            records = [
                {**record, "files": {n: outcome.files[n] for n in record.get("artifacts", [])}}
                for record in outcome.record.get("group", [outcome.record])
            ]
        runs = flight.group or [run]
        for member, record in zip(runs, records, strict=True):
            placement = {**record.get("placement", {}), "alone": flight.alone}
            record = {**record, "placement": {**placement, "attempts": flight.attempt}}
            if self.stacking is not None and member.index in self.stacking.reasons:
                record["stacking"] = {"reason": self.stacking.reasons[member.index]}
            # the job knew only the configuration; the plan knows what the run needed
            _record(self.schedule, {**record, "needs": list(member.needs)}, self.bar)
        statuses = [record["status"] for record in records]
        return next((status for status in statuses if status != "ok"), "ok")

    def _alone(self, flight: Flight, error: str) -> None:
        """A group that stopped as a whole: its members wait to train alone, saying why."""
        for member in flight.group:
            self.stacking.alone(
                member, f"its group stopped as a whole ({error}), so it trained alone"
            )
            self.schedule.waiting.append(member)
        self.schedule.waiting.sort(key=lambda r: r.index)
        return None


def _record(schedule: Schedule, record: dict[str, Any], bar: tqdm) -> None:
    """Write a finished run's artifacts, then its record."""
    files = record.pop("files", {})
    out_dir = schedule.store.path.parent
    for name, content in files.items():
        atomic_write(_inside(out_dir, name), lambda handle, c=content: handle.write(c))
    schedule.store.add(record)
    schedule.record(record)
    bar.set_postfix_str(f"{record['id']} {record['status']}")
    bar.update(1)


def _inside(out_dir: Path, name: str) -> Path:
    """``out_dir / name``, refusing a name that would leave ``out_dir``."""
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise BenchError(f"a run returned the artifact {name!r}, outside its output directory")
    return out_dir.joinpath(*relative.parts)


def _show_flying(bar: tqdm, schedule: Schedule) -> None:
    """With several runs in flight, the bar names them all."""
    if len(schedule.flying) > 1:
        names = ", ".join(f.run.name for f in schedule.flying.values())
        bar.set_postfix_str(f"{len(schedule.flying)} in flight: {names}", refresh=True)
