"""The history store: result files filed by commit, and an SQLite index of their series.

A history directory holds, for each result set added, two immutable files named by the SHA-256
of the result file's bytes: ``results/<sha>.json`` (the file as it was) and
``results/<sha>.entry.json`` (commit, branch, date, where it came from). They are the truth.
``index.sqlite`` (Python's :mod:`sqlite3`, no server) holds every point of every series, read
from them; it is brought up to date with the files whenever the store is opened, and
``bench history rebuild`` makes it again from nothing.

A point is one metric of one configuration in one result set: its raw samples (a timing's
repeats, or one accuracy per seed). A series is every point of one configuration and metric on
one kind of environment (:func:`environment_key`: CPU, device, torch version, threads), so only
like is compared with like. One call files any number of result sets, each under its own commit
(:meth:`HistoryStore.add_all`; a manifest lists them, :func:`read_manifest`). Adding is safe to
repeat (the same bytes are the same entry) and to run concurrently (files are written atomically
under unique names, and each call's index update is one transaction). A file bench cannot read
is refused before anything is written, and so are all the others of its call.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.comparing.matching import ResultSet, load_result_set
from harness.comparing.verdicts import TIME
from harness.errors import BenchError
from harness.results.environment import git_output
from harness.results.store import atomic_write, atomic_write_text, now, results_path

HISTORY_DIR = Path(".bench") / "history"
INDEX = "index.sqlite"
RESULTS = "results"
ENTRY_FORMAT = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    sha TEXT PRIMARY KEY, commit_id TEXT NOT NULL, branch TEXT, date TEXT NOT NULL,
    source TEXT, added TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    sha TEXT NOT NULL, series TEXT NOT NULL, label TEXT NOT NULL, model TEXT, metric TEXT NOT NULL,
    kind TEXT NOT NULL, higher_better INTEGER NOT NULL, machine TEXT NOT NULL,
    environment TEXT NOT NULL, samples TEXT NOT NULL, PRIMARY KEY (sha, series));
"""
ENVIRONMENT_KEY = ("cpu", "device", "device_name", "torch", "threads")


@dataclass(frozen=True)
class Entry:
    sha: str
    commit: str
    branch: str | None
    date: str
    source: str
    added: str


@dataclass(frozen=True)
class Point:
    """One metric of one configuration at one commit."""

    series: str
    label: str
    model: str
    metric: str
    kind: str
    higher_better: bool
    machine: str
    environment: dict[str, Any]
    samples: tuple[float, ...]
    entry: Entry


@dataclass(frozen=True)
class Filing:
    """A result set to file and what is known of it (None: from the file, or git)."""

    path: Path
    commit: str | None = None
    branch: str | None = None
    date: str | None = None


def default_history_dir(start: Path | None = None) -> Path:
    """``.bench/history`` at the top of the git repository around ``start`` (else under it)."""
    start = start or Path.cwd()
    top = git_output("rev-parse", "--show-toplevel", cwd=start)
    return (Path(top) if top else start) / HISTORY_DIR


def environment_key(environment: dict[str, Any]) -> dict[str, Any]:
    """The coarse environment a series belongs to: what changes timings, not the hostname (CI
    runners get a new one every run)."""
    return {key: environment.get(key) for key in ENVIRONMENT_KEY}


class HistoryStore:
    """A history directory; opening it brings its index up to date with its files."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.results = self.root / RESULTS
        self.results.mkdir(parents=True, exist_ok=True)
        self.sync()

    # --- adding ---------------------------------------------------------------------------

    def add(
        self,
        path: Path | str,
        commit: str | None = None,
        branch: str | None = None,
        date: str | None = None,
    ) -> tuple[Entry, bool]:
        """File one result set (see :meth:`add_all`); its entry and whether it is new."""
        return self.add_all([Filing(Path(path), commit, branch, date)])[0]

    def add_all(self, filings: Sequence[Filing]) -> list[tuple[Entry, bool]]:
        """File each result set under its commit (default: the one its results recorded),
        dated by its date (default: that commit's date in git, else the date the file
        records, else now); each entry and whether it is new. Every file is read and checked
        before anything is written, so one bad file files none; the index takes them all in
        one transaction. The same bytes again are the existing entry, whatever commit they
        are given."""
        checked = [_checked(filing) for filing in filings]
        answers, new = [], {}
        for filing, (data, result_set, sha) in zip(filings, checked, strict=True):
            known = new[sha][0] if sha in new else self._entry(sha)
            if known:
                answers.append((known, False))
                continue
            commit = filing.commit or _recorded_commit(result_set)
            date = filing.date or _date(commit, data)
            entry = Entry(sha, commit, filing.branch, date, str(filing.path), now())
            new[sha] = (entry, data, result_set)
            answers.append((entry, True))
        for entry, data, _ in new.values():
            atomic_write(self.results / f"{entry.sha}.json", lambda handle, d=data: handle.write(d))
            atomic_write_text(
                self.results / f"{entry.sha}.entry.json",
                json.dumps({"format": ENTRY_FORMAT, **entry.__dict__}) + "\n",
            )
        self._index([(entry, result_set) for entry, _, result_set in new.values()])
        return answers

    def _entry(self, sha: str) -> Entry | None:
        path = self.results / f"{sha}.entry.json"
        return _read_entry(path) if path.is_file() else None

    # --- reading --------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every entry, oldest first (by date, then by when it was added)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT sha, commit_id, branch, date, source, added FROM entries "
                "ORDER BY date, added, sha"
            ).fetchall()
        return [Entry(*row) for row in rows]

    def result_set(self, commit: str) -> ResultSet | None:
        """The first result set filed for ``commit``, as stored (None: none was)."""
        entry = next((e for e in self.entries() if e.commit == commit), None)
        return load_result_set(self.results / f"{entry.sha}.json") if entry else None

    def points(self) -> list[Point]:
        """Every point, in the order of its entry."""
        entries = {entry.sha: entry for entry in self.entries()}
        with self._connect() as db:
            rows = db.execute(
                "SELECT sha, series, label, model, metric, kind, higher_better, machine, "
                "environment, samples FROM points"
            ).fetchall()
        points = [
            Point(
                *row[1:6],
                bool(row[6]),
                row[7],
                json.loads(row[8]),
                tuple(json.loads(row[9])),
                entries[row[0]],
            )  # fmt: skip
            for row in rows
        ]
        order = {sha: i for i, sha in enumerate(entries)}
        return sorted(points, key=lambda p: (order[p.entry.sha], p.series))

    # --- the index ------------------------------------------------------------------------

    def sync(self) -> int:
        """Index every entry file the index lacks (after a crash, a copy, or a deleted index);
        the number indexed."""
        with self._connect() as db:
            known = {sha for (sha,) in db.execute("SELECT sha FROM entries")}
        missing = [
            path
            for path in sorted(self.results.glob("*.entry.json"))
            if path.stem[:-6] not in known
        ]
        entries = [_read_entry(path) for path in missing]
        self._index([(e, load_result_set(self.results / f"{e.sha}.json")) for e in entries])
        return len(missing)

    def rebuild(self) -> int:
        """Make the index again from the files alone; the number of entries."""
        (self.root / INDEX).unlink(missing_ok=True)
        return self.sync()

    def _index(self, entries: Sequence[tuple[Entry, ResultSet]]) -> None:
        """Index result sets in one transaction."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            for entry, result_set in entries:
                db.execute(
                    "INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                    (entry.sha, entry.commit, entry.branch, entry.date, entry.source, entry.added),
                )
                rows = _points(result_set, entry.sha)
                db.executemany("INSERT OR IGNORE INTO points VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
            db.execute("COMMIT")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.root / INDEX, timeout=60, isolation_level=None)) as db:
            db.executescript(SCHEMA)
            yield db


def _read_entry(path: Path) -> Entry:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != ENTRY_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {ENTRY_FORMAT}")
        fields = {key: data[key] for key in Entry.__dataclass_fields__}
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise BenchError(f"{path}: not a bench history entry ({exc})") from None
    return Entry(**fields)


def _recorded_commit(result_set: ResultSet) -> str:
    commit = result_set.environment.get("git_commit")
    if commit:
        return str(commit).removesuffix("-dirty")
    raise BenchError(f"{result_set.path} records no git commit: give --commit SHA")


def _checked(filing: Filing) -> tuple[bytes, ResultSet, str]:
    """The file's bytes, read as bench reads results (refusing what it cannot), and their
    SHA-256."""
    try:
        data = filing.path.read_bytes()
    except OSError as exc:
        raise BenchError(f"cannot read {filing.path}: {exc.strerror or exc}") from None
    return data, load_result_set(filing.path), hashlib.sha256(data).hexdigest()


def _date(commit: str, data: bytes) -> str:
    """The commit's date in git, else the date the results record (bench: when the file was
    made; pytest-benchmark: the commit's time, else the run's), else now."""
    in_git = git_output("show", "-s", "--format=%cI", commit)
    if in_git:
        return in_git
    document = json.loads(data)
    recorded = document.get("created_at") or (document.get("commit_info") or {}).get("time")
    return str(recorded or document.get("datetime") or now())


def read_manifest(path: Path, branch: str | None = None) -> list[Filing]:
    """The result sets a manifest lists, one a line: ``PATH COMMIT [DATE]`` (PATH relative to
    the manifest's folder, a results file or the folder holding one; quotes as in a shell; a
    ``#`` starts a comment). A line that is not that is a usage error naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read the manifest {path}: {exc}") from None
    filings = []
    for number, line in enumerate(lines, 1):
        where = f"{path}:{number}"
        try:
            fields = shlex.split(line, comments=True)
        except ValueError as exc:
            raise BenchError(f"{where}: {exc}") from None
        if not fields:
            continue
        if len(fields) not in (2, 3):
            raise BenchError(f"{where}: expected 'PATH COMMIT [DATE]', not {line.strip()!r}")
        file = path.parent / fields[0]
        if not file.exists():
            raise BenchError(f"{where}: no such file or folder {file}")
        date = checked_date(fields[2], where) if len(fields) == 3 else None
        filings.append(Filing(results_path(file), fields[1], branch, date))
    return filings


def checked_date(text: str, where: str) -> str:
    """``text`` if it is an ISO 8601 date (the order of commits is the order of their dates),
    else a usage error naming ``where``."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise BenchError(
            f"{where}: {text!r} is not an ISO date such as 2026-11-01T12:00:00"
        ) from None
    return text


def _points(result_set: ResultSet, sha: str) -> Iterator[tuple]:
    """The index rows of one stored result set."""
    key = environment_key(result_set.environment)
    machine = " / ".join(str(key[k]) for k in ("cpu", "device") if key.get(k)) or "unknown"
    environment = json.dumps(key, sort_keys=True, default=str)
    for match, config in result_set.configs.items():
        for metric, measurement in config.metrics.items():
            samples = measurement.samples or (measurement.median,)
            series = hashlib.sha256(f"{match}\0{metric}\0{environment}".encode()).hexdigest()[:16]
            model = str(config.config.get("model") or config.config.get("baseline") or "")
            yield (
                sha,
                series,
                config.label,
                model or config.label,
                metric,
                measurement.kind,
                int(measurement.higher_better and measurement.kind != TIME),
                machine,
                environment,
                json.dumps(list(samples)),
            )
