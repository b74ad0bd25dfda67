"""The results file: one JSON document per ``bench run``, rewritten atomically after every run.

Schema (``schema_version`` 1)::

    {"schema_version": 1, "tool": "bench", "bench_version": "...",
     "status": "running|complete|interrupted", "note": "(when interrupted)",
     "command": [...], "created_at": "...", "updated_at": "...",
     "suite": {"name", "procedure", "source", "description", "settings"},
     "environment": {...see harness.environment...},
     "runs": [{"id", "hash", "procedure", "config": {...}, "status", "error", "metrics": {...},
               "started_at", "wall_time_s"}]}
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import __version__
from harness.options import BenchError

SCHEMA_VERSION = 1
RESULTS_NAME = "results.json"
STATUSES = ("ok", "failed", "diverged", "oom", "timeout", "skipped")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory, fsync, then rename over ``path``.

    A reader (or an interrupt) sees either the old file or the new one, never a torn write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


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

    @classmethod
    def create(
        cls, path: Path, *, command: list[str], suite: dict[str, Any], environment: dict[str, Any]
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
                "runs": [],
            },
        )
        store.save()
        return store

    @property
    def runs(self) -> list[dict[str, Any]]:
        return self.data["runs"]

    def add(self, record: dict[str, Any]) -> None:
        self.runs.append(record)
        self.save()

    def finish(self, status: str, note: str | None = None) -> None:
        self.data["status"] = status
        if note:
            self.data["note"] = note
        self.save()

    def save(self) -> None:
        self.data["updated_at"] = now()
        atomic_write_json(self.path, self.data)


def load_results(path: Path | str) -> dict[str, Any]:
    """Read a results file, refusing anything truncated or not written by bench."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_NAME
    if not path.is_file():
        raise BenchError(f"no results file at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(
            f"{path} is not valid JSON (truncated or not a results file): {exc}"
        ) from None
    if not isinstance(data, dict) or data.get("tool") != "bench" or "runs" not in data:
        raise BenchError(f"{path} is not a bench results file")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BenchError(
            f"{path} has schema version {data.get('schema_version')}; "
            f"this bench reads version {SCHEMA_VERSION}"
        )
    return data
