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
like is compared with like. Adding is safe to repeat (the same bytes are the same entry) and to
run concurrently (files are written atomically under unique names, and each index update is one
transaction). A file bench cannot read is refused before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.comparing.matching import ResultSet, load_result_set
from harness.comparing.verdicts import TIME
from harness.errors import BenchError
from harness.results.environment import git_output
from harness.results.store import atomic_write, atomic_write_text, now

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
        """File one result set under ``commit`` (default: the one the results recorded), dated
        ``date`` (default: that commit's date in git, else now); the entry and whether it is
        new. The same bytes again are the existing entry, whatever commit they are given."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BenchError(f"cannot read {path}: {exc.strerror or exc}") from None
        result_set = load_result_set(path)  # refuses what bench cannot read, before any write
        sha = hashlib.sha256(data).hexdigest()
        existing = self.results / f"{sha}.entry.json"
        if existing.is_file():
            return _read_entry(existing), False
        commit = commit or _recorded_commit(result_set)
        date = date or git_output("show", "-s", "--format=%cI", commit) or now()
        entry = Entry(sha, commit, branch, date, str(path), now())
        atomic_write(self.results / f"{sha}.json", lambda handle: handle.write(data))
        atomic_write_text(existing, json.dumps({"format": ENTRY_FORMAT, **entry.__dict__}) + "\n")
        self._index(entry, result_set)
        return entry, True

    # --- reading --------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every entry, oldest first (by date, then by when it was added)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT sha, commit_id, branch, date, source, added FROM entries "
                "ORDER BY date, added, sha"
            ).fetchall()
        return [Entry(*row) for row in rows]

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
        for path in missing:
            entry = _read_entry(path)
            self._index(entry, load_result_set(self.results / f"{entry.sha}.json"))
        return len(missing)

    def rebuild(self) -> int:
        """Make the index again from the files alone; the number of entries."""
        (self.root / INDEX).unlink(missing_ok=True)
        return self.sync()

    def _index(self, entry: Entry, result_set: ResultSet) -> None:
        rows = list(_points(result_set, entry.sha))
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                (entry.sha, entry.commit, entry.branch, entry.date, entry.source, entry.added),
            )
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
