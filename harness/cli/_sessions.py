"""What ``bench ab`` and ``bench bisect`` share: the options that say what a session measures and
how it judges, and the session they make between two sides."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from harness.cli._shared import data_root_option, plugin_names, plugin_option
from harness.comparing.verdicts import MIN_ROUNDS, Rules
from harness.measuring import MODES
from harness.options import parse_assignments

if TYPE_CHECKING:  # imported when a command runs, not for --help
    from harness.comparing.ab.session import Session
    from harness.comparing.ab.sides import Side
    from harness.planning.overrides import Overrides

ROUNDS = 20  # without --rounds or a settings file's ab_rounds

OPTIONS = [
    click.option(
        "--suite",
        metavar="NAME_OR_PATH",
        help="A timing suite (procedure throughput) [default without --model: the settings "
        "file's suite].",
    ),
    click.option("--model", "--models", "models", multiple=True, metavar="NAME", help="Model."),
    click.option(
        "--dataset",
        "--datasets",
        "datasets",
        multiple=True,
        metavar="NAME",
        help="Dataset (default: synthetic).",
    ),
    click.option("--model-opt", multiple=True, metavar="KEY=VALUE", help="Model option."),
    click.option("--dataset-opt", multiple=True, metavar="KEY=VALUE", help="Dataset option."),
    click.option(
        "--batch-size", "batch_sizes", multiple=True, type=click.IntRange(min=1), help="Batch size."
    ),
    click.option(
        "--mode", "modes", multiple=True, type=click.Choice(MODES), help="What to measure."
    ),
    click.option(
        "--device",
        metavar="auto|cpu|cuda[:N]",
        default="auto",
        show_default=True,
        help="Device both sides measure on.",
    ),
    click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="torch CPU threads of each side (one thread cannot wait for another).",
    ),
    click.option(
        "--cpus",
        default="auto",
        show_default=True,
        metavar="auto|any|N,M",
        help="CPUs both sides are pinned to, so that neither runs on a faster core: auto = the "
        "last --threads usable CPUs; any = no pinning.",
    ),
    click.option(
        "--rounds",
        type=click.IntRange(min=MIN_ROUNDS),
        help=f"Rounds, each in fresh worker processes (at least {MIN_ROUNDS}, the fewest the "
        f"paired test can decide on) [default: the settings file's ab_rounds, else {ROUNDS}].",
    ),
    click.option(
        "--round-time",
        type=click.FloatRange(min=0),
        default=0.05,
        show_default=True,
        help="Seconds of samples per side, mode and round, at least.",
    ),
    click.option(
        "--max-round-time",
        type=click.FloatRange(min=0),
        default=2.0,
        show_default=True,
        help="Stop a block after this many seconds of samples (there is always one sample).",
    ),
    click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Suite setting."),
    click.option(
        "--threshold",
        "thresholds",
        multiple=True,
        metavar="[GLOB=]VALUE",
        help="Slowdown that counts as a regression (default 5%), for every metric or those GLOB "
        "matches (repeatable), as bench compare takes it.",
    ),
    click.option(
        "--metric",
        "metrics",
        multiple=True,
        metavar="GLOB",
        help="Judge only metrics GLOB matches.",
    ),
    click.option(
        "--gate",
        multiple=True,
        metavar="GLOB",
        help="Only metrics GLOB matches decide the exit code (repeatable), as bench compare "
        "takes it.",
    ),
    click.option("--strict", is_flag=True, help="Fail noisy regressions too."),
    data_root_option(),
    click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
    plugin_option,
]


def session_options(command: Callable) -> Callable:
    """Every option of :data:`OPTIONS`, in that order in ``--help``."""
    for option in reversed(OPTIONS):
        command = option(command)
    return command


@dataclass(frozen=True)
class Request:
    """What the session options ask for, read once: the suite or the models' overrides, the
    session's name, its rounds and the rules its verdict applies."""

    suite: str | None
    overrides: Overrides
    name: str
    rounds: int
    rules: Rules
    flags: dict[str, Any]

    @classmethod
    def of(cls, flags: dict[str, Any], prefix: str) -> Request:
        from harness.comparing.settings_file import find_settings
        from harness.planning.overrides import Overrides

        project = find_settings()
        models = flags["models"]
        suite = flags["suite"] or (None if models else project.suite)
        if not suite and not models:
            raise click.UsageError(
                "give --suite NAME_OR_PATH or at least one --model (or a suite in the settings "
                "file)"
            )
        settings = dict(parse_assignments(flags["settings"], "--set"))
        if flags["batch_sizes"]:
            settings["batch_sizes"] = flags["batch_sizes"]
        if flags["modes"]:
            settings["modes"] = flags["modes"]
        overrides = Overrides(
            models=list(models),
            datasets=list(flags["datasets"]),
            model_options=parse_assignments(flags["model_opt"], "--model-opt"),
            dataset_options=parse_assignments(flags["dataset_opt"], "--dataset-opt"),
            settings=settings,
        )
        rules = project.rules(flags["thresholds"], flags["metrics"], flags["strict"], flags["gate"])
        name = f"{prefix}-" + (Path(suite).stem if suite else "-".join(models))
        rounds = flags["rounds"] or project.ab_rounds or ROUNDS
        return cls(suite, overrides, name, rounds, rules, flags)

    def session(self, ctx: click.Context, sides: list[Side], rounds: int | None = None) -> Session:
        """The session between ``sides`` (baseline, candidate), of ``rounds`` (default: the
        request's)."""
        from harness.comparing.ab.session import Session
        from harness.measuring.affinity import pinned_cpus

        flags = self.flags
        return Session(
            baseline=sides[0],
            candidate=sides[1],
            suite=self.suite,
            overrides=self.overrides,
            default_name=self.name,
            rounds=rounds or self.rounds,
            round_time=flags["round_time"],
            max_round_time=flags["max_round_time"],
            threads=flags["threads"],
            device=flags["device"],
            cpus=pinned_cpus(flags["cpus"], flags["threads"]),
            plugins=tuple(plugin_names(ctx)),
            data_root=flags["data_root"],
            command=["bench", *sys.argv[1:]],
        )
