"""The two sides of ``bench ab``: which code each one runs, and the worker process that runs it.

A side is given as one of:

- ``current``: this interpreter and the bench installed in it (the default candidate);
- a Python interpreter or a virtual environment (``/opt/venv-base`` or ``.../bin/python``):
  another installation, with its own bench, plugins and torch;
- ``git:REV``: a revision of the repository in the current directory, installed into a folder of
  its own (:mod:`harness.comparing.ab.revisions`): of bench's own repository, that revision's
  bench beside this interpreter's other packages; of a plugin package's, this bench with that
  revision of the package, hiding an installed copy of it;
- ``plugin:PATH_OR_MODULE``: this installation plus one more plugin, e.g. two versions of a
  model written as two plugin files.

Each side's worker (:mod:`harness.comparing.ab.worker`) gets the thread count in ``OMP_NUM_THREADS``
and ``MKL_NUM_THREADS`` as well as ``torch.set_num_threads``, starts in a session of its own (Ctrl-C
is the parent's to handle) and writes its output to a log file whose end is shown if it dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.comparing.ab.revisions import LOG_TAIL, find_revision, install_revision
from harness.comparing.ab.worker import PROTOCOL
from harness.errors import BenchError
from harness.results.environment import git_commit


@dataclass(frozen=True)
class Side:
    """What a side runs: an interpreter, paths put first on its import path, extra plugins."""

    role: str  # baseline or candidate
    spec: str  # as the user wrote it
    python: str = sys.executable
    path: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    commit: str | None = None  # its git commit, where known (not for another interpreter)


def resolve_side(role: str, spec: str, work_dir: Path, *, install: bool = True) -> Side:
    """Turn ``--baseline``/``--candidate`` into a :class:`Side`; git revisions are installed
    into ``work_dir`` (with ``install=False`` only found, for ``bench ab --dry-run``)."""
    if spec == "current":
        return Side(role, spec, commit=git_commit())
    if spec.startswith("plugin:"):
        name = spec.removeprefix("plugin:")
        plugin = str(Path(name).resolve()) if Path(name).is_file() else name
        return Side(role, spec, plugins=(plugin,), commit=git_commit())
    if spec.startswith("git:") and not install:
        return Side(role, spec, commit=find_revision(spec.removeprefix("git:"))[0])
    if spec.startswith("git:"):
        commit, site = install_revision(spec.removeprefix("git:"), work_dir)
        return Side(role, spec, path=(str(site),), commit=commit)
    return Side(role, spec, python=str(_interpreter(role, spec)))


def _interpreter(role: str, spec: str) -> Path:
    path = Path(spec).expanduser()
    for candidate in (path / "bin" / "python", path / "Scripts" / "python.exe", path):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise BenchError(
        f"--{role} {spec}: not 'current', 'git:REV', 'plugin:PATH_OR_MODULE', a Python "
        "interpreter or a virtual environment"
    )


class WorkerDied(RuntimeError):
    """A side's worker ended or broke the protocol; the message holds the end of its log."""


@dataclass
class WorkerProcess:
    """A running worker of one side, and the requests sent to it."""

    side: Side
    process: subprocess.Popen
    log: Path
    hello: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        side: Side,
        threads: int,
        plugins: list[str],
        log: Path,
        data_root: Path | None,
        cpus: tuple[int, ...] = (),
    ) -> WorkerProcess:
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        if side.path:  # absolute: the worker starts in another folder (a default --out is not)
            paths = [os.path.abspath(path) for path in side.path]
            env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            )
        command = [side.python, "-m", "harness.comparing.ab.worker", "--threads", str(threads)]
        command += ["--out", str(log.parent)]
        if cpus:
            command += ["--cpus", ",".join(map(str, cpus))]
        for plugin in [*plugins, *side.plugins]:
            command += ["--plugin", plugin]
        if data_root:
            command += ["--data-root", str(data_root)]
        # Started in the log's folder, and with PYTHONSAFEPATH: ``python -m`` would otherwise put
        # the current directory first on the import path, and a checkout there (the candidate's)
        # would shadow the side's own bench.
        env["PYTHONSAFEPATH"] = "1"
        with open(log, "ab") as handle:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=handle,
                cwd=log.parent,
                env=env,
                text=True,
                start_new_session=True,
            )
        return cls(side, process, log)

    def handshake(self, device: str = "auto") -> dict[str, Any]:
        """Check the worker speaks this protocol; its environment (on ``device``) and plugin
        failures."""
        try:
            self.hello = self.request("hello", device=device)
        except WorkerDied as exc:
            if "No module named harness.comparing.ab.worker" in str(exc):
                raise BenchError(
                    f"--{self.side.role} {self.side.spec}: its bench has no interleaved worker "
                    "(harness.comparing.ab.worker); install a bench with `bench ab` there"
                ) from None
            raise BenchError(str(exc)) from None
        if self.hello.get("protocol") != PROTOCOL:
            raise BenchError(
                f"--{self.side.role} {self.side.spec}: its worker speaks protocol "
                f"{self.hello.get('protocol')}, this bench speaks {PROTOCOL}; use the same "
                "bench version on both sides"
            )
        return self.hello

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply."""
        try:
            self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self.process.wait()
            raise WorkerDied(
                f"the {self.side.role} worker ({self.side.spec}) "
                f"{_ended(self.process.returncode)}; the end of {self.log}:\n{self.tail()}"
            )
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            self.process.kill()
            raise WorkerDied(
                f"the {self.side.role} worker ({self.side.spec}) broke the protocol with "
                f"{line[:200]!r}; the end of {self.log}:\n{self.tail()}"
            ) from None

    def tail(self) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.is_file() else ""
        return "\n".join(text.strip().splitlines()[-LOG_TAIL:])


def close_workers(workers: Iterable[WorkerProcess]) -> None:
    """End each worker's input, then wait for all to exit, side by side (this bench's worker
    exits at once; an older one's teardown of torch takes about a second). One that has not
    exited within 5 s is killed."""
    running = [w for w in workers if w.process.poll() is None]
    for worker in running:
        with contextlib.suppress(OSError):
            worker.process.stdin.close()
    for worker in running:
        try:
            worker.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def _ended(code: int | None) -> str:
    return f"was killed by signal {-code}" if code is not None and code < 0 else f"exited ({code})"
