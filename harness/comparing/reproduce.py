"""The command that shows a regression again, printed with every regression row of ``bench
compare`` and ``bench ab`` (terminal, markdown and JSON): ``bench ab`` between the two files'
revisions, on the row's run and mode alone.

A timing or counter row of a timing run (``bench time``, ``bench ab``, the ``throughput``
suite) names all it takes: the model, dataset and their options, batch size, device, the mode,
the settings that change the step (``amp``, ``channels_last``, ``compile``) and the plugins the
baseline's command named (``--plugin``, as it recorded them); the revisions
are the commits the two files recorded (``environment.git_commit``), the threads the
baseline's. ``bench ab`` measures both revisions in alternating rounds on this machine, so it
shows a slowdown again where two measurements taken apart cannot, and it records the
counters too. There is no such command for a task metric (``bench rerun`` reruns one run), for
a run of another procedure, or when a file recorded no commit: the row then has none. ``bench
history detect`` offers the ``bench bisect`` command of the same run for each change it finds.
"""

from __future__ import annotations

import shlex
from typing import Any

from harness.comparing.matching import Comparison, ResultSet
from harness.comparing.verdicts import COUNT, REGRESSION, TIME, Row

STEP_SETTINGS = ("amp", "channels_last", "compile")  # throughput settings that change the step
UNSET = (None, "none", False)


def reproduce_command(comparison: Comparison, row: Row) -> str | None:
    """``bench ab`` between the two files' revisions on ``row``'s run and mode; ``None`` when
    the row has none (see the module docstring)."""
    flags = measurement_flags(comparison.baseline, row.config, row.metric)
    revisions = [
        _revision(side.environment) for side in (comparison.baseline, comparison.candidate)
    ]
    if row.kind not in (TIME, COUNT) or flags is None or None in revisions:
        return None
    sides = ["--baseline", f"git:{revisions[0]}", "--candidate", f"git:{revisions[1]}"]
    return shlex.join(["bench", "ab", *sides, *flags])


def bisect_command(side: ResultSet, label: str, metric: str, good: str, bad: str, exact: bool):
    """``bench bisect`` from ``good`` to ``bad`` on the run ``label`` of ``side`` (a result set
    of either commit) and ``metric``, on the counters alone for a counter (``exact``); ``None``
    where ``bench ab`` could not measure the run."""
    flags = measurement_flags(side, label, metric)
    if flags is None:
        return None
    judged = ["--counters", "--metric", metric] if exact else ["--metric", metric]
    return shlex.join(["bench", "bisect", "--good", good[:12], "--bad", bad[:12], *flags, *judged])


def measurement_flags(side: ResultSet, label: str, metric: str) -> list[str] | None:
    """The ``bench ab`` options that measure the run ``label`` of ``side`` in ``metric``'s mode
    (``forward`` of ``forward.operators``) as it was measured; ``None`` for a run that is not a
    timing run's, or a metric that is not one of its modes."""
    config = _run_config(side, label)
    mode = metric.partition(".")[0]
    if config is None or mode not in config.get("modes", ()):
        return None
    words = ["--model", config["model"], *_options("--model-opt", config.get("model_options"))]
    words += ["--dataset", config["dataset"]]
    words += _options("--dataset-opt", config.get("dataset_options"))
    words += ["--batch-size", str(config["batch_size"]), "--mode", mode]
    words += ["--device", str(config.get("device", "cpu"))]
    threads = side.environment.get("threads")
    words += ["--threads", str(threads)] if threads else []
    for key in STEP_SETTINGS:
        if config.get(key) not in UNSET:
            words += ["--set", f"{key}={_text(config[key])}"]
    return words + [word for plugin in side.plugins for word in ("--plugin", plugin)]


def regression_commands(comparison: Comparison) -> list[tuple[Row, str]]:
    """Each regression row that has a reproduce command, with it."""
    found = [(row, reproduce_command(comparison, row)) for row in comparison.rows]
    return [(row, command) for row, command in found if row.verdict == REGRESSION and command]


def reproduce_lines(comparison: Comparison) -> list[str]:
    """A line per regression that has a command: ``reproduce: RUN METRIC: COMMAND``."""
    return [f"reproduce: {r.config} {r.metric}: {c}" for r, c in regression_commands(comparison)]


def reproduce_markdown(comparison: Comparison) -> list[str]:
    """The same for a pull-request comment: a section, each command in a code span."""
    commands = regression_commands(comparison)
    items = [f"- {row.config} `{row.metric}`: `{command}`" for row, command in commands]
    return ["### Reproduce\n\n" + "\n".join(items)] if items else []


def _run_config(side: ResultSet, label: str) -> dict[str, Any] | None:
    return next((c.config for c in side.configs.values() if c.label == label), None)


def _revision(environment: dict[str, Any]) -> str | None:
    """The commit a file was measured at, short; a dirty checkout's commit is the closest."""
    commit = str(environment.get("git_commit") or "").removesuffix("-dirty")
    return commit[:12] or None


def _options(flag: str, options: dict[str, Any] | None) -> list[str]:
    return [word for key, value in sorted((options or {}).items()) for word in
            (flag, f"{key}={_text(value)}")]  # fmt: skip


def _text(value: Any) -> str:
    """An option's value as the command line takes it (lists comma-separated, booleans lower)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(_text, value))
    return str(value)
