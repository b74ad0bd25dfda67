"""The results file: one JSON document per ``bench run``, rewritten atomically after every run.

Schema (``schema_version`` 1)::

    {"schema_version": 1, "tool": "bench", "bench_version": "...",
     "status": "running|complete|interrupted|stopped", "note": "(unless complete)",
     "command": [...], "created_at": "...", "updated_at": "...",
     "resumed": [{"at", "command", "environment"}] (after --resume),
     "suite": {"name", "procedure", "source", "description", "settings"},
     "environment": {...see harness.results.environment...},
     "execution": {"device", "threads" (per run), "executor": {"name", "workers", ...},
                   "jobs", "retries", "deterministic", "run_timeout", "fail_fast", "plugins",
                   "stack", "data_root"},
     "runs": [{"id", "index", "hash", "procedure", "config": {...}, "needs": [indices],
               "status", "error", "traceback", "metrics": {...}, "started_at", "wall_time_s",
               "artifacts": [paths relative to the results directory],
               "placement": {"host", "worker", "threads", "alone", "attempts"},
               "stacking": {"group", "size", "members", "train_seconds",
                            "train_seconds_share"} or {"reason"} (with --stack auto)}]}

``runs`` hold every finished run in plan order, with ``status`` one of :data:`STATUSES`; a run
interrupted part-way is not recorded. ``placement`` says where a run executed, with how many
threads, whether nothing else ran beside it (``alone``) and on which attempt; a run that never
started (``skipped``) has none. ``stacking`` says the run trained in a stacked group (its
time fields are then the group's; ``train_seconds_share`` is its part) or why it trained
alone (:mod:`harness.execution.stacking`). ``procedure`` and ``config`` of a run, with ``execution``
and the environment's device, are all that :mod:`harness.execution.rerun` needs to repeat it.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from harness import __version__
from harness.errors import BenchError

SCHEMA_VERSION = 1
RESULTS_NAME = "results.json"
STATUSES = ("ok", "failed", "diverged", "oom", "timeout", "skipped")
SUITE_STATUSES = ("running", "complete", "interrupted", "stopped")
# What every reader relies on: the document's keys, its suite's and each run record's, by type.
_DOCUMENT_KEYS = {"status": str, "command": list, "suite": dict, "environment": dict, "runs": list}
_SUITE_KEYS = {"name": str, "procedure": str}
_RUN_KEYS = {
    "id": str,
    "hash": str,
    "procedure": str,
    "status": str,
    "config": dict,
    "metrics": dict,
}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Let ``write`` fill a temporary file in the same directory, fsync it, rename it over
    ``path``, then fsync the directory so the rename itself survives a crash.

    A reader (or an interrupt) sees either the old file or the new one, never a torn write:
    SIGINT and SIGTERM wait until the rename is done.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with signals_held():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            _chmod_as_created(fd)
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)


def _chmod_as_created(fd: int) -> None:
    """Give the temporary file the permissions ``open()`` would have: ``mkstemp`` makes it
    private (0600), and the rename would carry that over to results others need to read."""
    if not hasattr(os, "fchmod"):  # Windows: no POSIX modes
        return
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows); the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON (tuples as lists, paths and tensors' items as values)."""
    atomic_write_text(path, indented_json(data) + "\n")


def indented_json(value: Any) -> str:
    """``value`` as the results file holds it: JSON indented by 2."""
    return json.dumps(value, indent=2, sort_keys=False, default=_jsonable)


def nested(text: str, level: int) -> str:
    """:func:`indented_json`'s ``text`` as it reads ``level`` levels down in an enclosing
    document: every line after the first indented by ``2 * level`` more (JSON strings never
    hold a raw line break, so every line break is the layout's)."""
    return text.replace("\n", "\n" + "  " * level)


def as_json(value: Any, what: str = "value") -> Any:
    """``value`` as the results file will hold it (tuples as lists, tensors' items as numbers);
    a ``ValueError`` naming ``what`` if JSON cannot hold it (a dict with tuple keys, an array)."""
    try:
        return json.loads(json.dumps(value, default=_jsonable))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} cannot be written to the results file: {exc}") from exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class ResultsStore:
    """The results document of one ``bench run``; every change is persisted atomically."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data
        self._run_texts: dict[int, tuple[dict[str, Any], str]] = {}  # id: (record, its JSON)
        # told of each record once the file holding it is written: (record, document)
        self.listeners: list[Callable[[dict[str, Any], dict[str, Any]], None]] = []

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        command: list[str],
        suite: dict[str, Any],
        environment: dict[str, Any],
        execution: dict[str, Any] | None = None,
    ) -> ResultsStore:
        if path.exists():
            raise BenchError(f"{path} already exists; choose another --out directory")
        stamp = now()
        store = cls(
            path,
            {
                "schema_version": SCHEMA_VERSION,
                "tool": "bench",
                "bench_version": __version__,
                "status": "running",
                "command": command,
                "created_at": stamp,
                "updated_at": stamp,
                "suite": suite,
                "environment": environment,
                "execution": execution or {},
                "runs": [],
            },
        )
        store.save()
        return store

    @classmethod
    def reopen(cls, path: Path, *, command: list[str], environment: dict[str, Any]) -> ResultsStore:
        """An existing results file, to be continued (``--resume``); refuses foreign files."""
        store = cls(results_path(path), load_results(path))
        if not all(isinstance(record.get("index"), int) for record in store.runs):
            raise BenchError(f"{store.path} was written by an older bench; it cannot be resumed")
        store.data["status"] = "running"
        store.data.pop("note", None)
        store.data.setdefault("resumed", []).append(
            {"at": now(), "command": command, "environment": environment}
        )
        return store

    @property
    def runs(self) -> list[dict[str, Any]]:
        return self.data["runs"]

    def completed(self, run_hash: str) -> bool:
        """Whether the run with this configuration hash has finished with status ``ok``."""
        return any(r["hash"] == run_hash and r["status"] == "ok" for r in self.runs)

    def add(self, record: dict[str, Any]) -> None:
        """Record a run, replacing an earlier record of the same configuration, in plan order."""
        runs = [r for r in self.runs if r["hash"] != record["hash"]] + [record]
        self.data["runs"] = sorted(runs, key=lambda r: r["index"])
        self.save()
        for listener in self.listeners:
            listener(record, self.data)

    def finish(self, status: str, note: str | None = None) -> None:
        self.data["status"] = status
        if note:
            self.data["note"] = note
        self.save()

    def save(self) -> None:
        self.data["updated_at"] = now()
        atomic_write_text(self.path, self._text() + "\n")

    def _text(self) -> str:
        """The document exactly as :func:`indented_json` writes it, with each run's record
        encoded once: the file is saved after every run, and encoding all the runs again
        each time made saving a suite of many runs grow with the square of their number (a
        third of a minute for 81 runs). Records are never changed once added."""
        texts = {}
        for record in self.runs:
            kept = self._run_texts.get(id(record))
            texts[id(record)] = (
                kept if kept and kept[0] is record else (record, indented_json(record))
            )
        self._run_texts = texts
        runs = ",\n".join("  " + nested(text, 1) for _, text in texts.values())
        fields = [
            f"  {json.dumps(key)}: "
            + nested(f"[\n{runs}\n]" if key == "runs" and runs else indented_json(value), 1)
            for key, value in self.data.items()
        ]
        return "{\n" + ",\n".join(fields) + "\n}" if fields else "{}"


def results_path(path: Path | str) -> Path:
    """The results file itself, given the file or the directory holding it."""
    path = Path(path)
    return path / RESULTS_NAME if path.is_dir() else path


def redirected(command: Sequence[str], option: str, directory: Path) -> list[str]:
    """``command`` (a recorded ``bench`` command line) writing to ``directory`` through ``option``
    (``--out`` or ``--resume``) in place of its own ``--out`` or ``--resume``, which cannot be
    combined."""
    kept: list[str] = []
    skip = False
    for arg in command:
        if skip:
            skip = False
        elif arg in ("--out", "--resume"):
            skip = True
        elif not arg.startswith(("--out=", "--resume=")):
            kept.append(arg)
    return [*kept, option, str(directory)]


def free_directory(taken: Path) -> Path:
    """``taken`` with the first suffix ``-2``, ``-3``... that names nothing yet."""
    taken = taken if taken.name else taken.resolve()  # "." has no name to add a suffix to
    number = 2
    while taken.with_name(f"{taken.name}-{number}").exists():
        number += 1
    return taken.with_name(f"{taken.name}-{number}")


def resume_command(data: dict[str, Any], directory: Path) -> list[str] | None:
    """The command that finishes the suite of ``data`` in ``directory``: the ``bench run`` that
    wrote it, with ``--resume`` (``None`` for results no ``bench run`` wrote)."""
    command = list(data.get("command") or [])
    if command[:1] != ["bench"] or "run" not in command:
        return None
    return redirected(command, "--resume", directory)


def load_results(path: Path | str) -> dict[str, Any]:
    """Read a results file, refusing anything truncated or not written by bench."""
    path = results_path(path)
    if not path.is_file():
        raise BenchError(f"no results file at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(
            f"{path} is not valid JSON (truncated or not a results file): {exc}"
        ) from None
    if not isinstance(data, dict) or data.get("tool") != "bench":
        raise BenchError(f"{path} is not a bench results file")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BenchError(
            f"{path} has schema version {data.get('schema_version')}; "
            f"this bench reads version {SCHEMA_VERSION}"
        )
    problem = _schema_problem(data)
    if problem:
        raise BenchError(f"{path} is damaged, not a complete bench results file: {problem}")
    return data


def _schema_problem(data: dict[str, Any]) -> str | None:
    """What is missing or of the wrong type in a results document (``None``: nothing)."""
    problem = _missing(data, _DOCUMENT_KEYS, "") or _missing(data["suite"], _SUITE_KEYS, "suite.")
    if problem:
        return problem
    if data["status"] not in SUITE_STATUSES:
        return f"status {data['status']!r} is not one of {', '.join(SUITE_STATUSES)}"
    if not isinstance(data.get("execution", {}), dict):
        return "execution is not a table"
    for i, record in enumerate(data["runs"]):
        if not isinstance(record, dict):
            return f"runs[{i}] is not a run record"
        problem = _missing(record, _RUN_KEYS, f"runs[{i}].")
        if problem:
            return problem
        if record["status"] not in STATUSES:
            return f"runs[{i}].status {record['status']!r} is not one of {', '.join(STATUSES)}"
    return None


def _missing(table: dict[str, Any], keys: dict[str, type], where: str) -> str | None:
    """The first of ``keys`` that ``table`` lacks or holds with another type, described."""
    for key, kind in keys.items():
        if key not in table:
            return f"{where}{key} is missing"
        if not isinstance(table[key], kind):
            return f"{where}{key} is not a {kind.__name__}"
    return None


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends, so that what it writes is whole.

    A signal that arrives meanwhile is raised again right after the block, and its usual
    handler runs then. (Blocking the signal with ``pthread_sigmask`` would not do: the kernel
    hands a process-wide signal to any thread that does not block it, and Python then runs the
    handler in the main thread anyway.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum, frame):
        pending.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)
