"""The ``bench`` command line: a thin layer that parses, calls the library and prints.

Each command lives in the module named after it and is imported only when it runs (or when its
help is asked for), so ``bench --help`` answers without importing torch.
"""

from __future__ import annotations

import sys
from importlib import import_module

import click

from harness import __version__
from harness.cli._shared import EXIT_SIGNAL, plugin_option
from harness.errors import BenchError

# command -> (module, attribute, one-line summary for `bench --help`)
COMMANDS = {
    "ab": ("ab", "ab_command", "Measure a baseline and a candidate in alternating rounds."),
    "bisect": ("bisect", "bisect_command", "Find the commit that regressed, by bench ab sessions."),
    "compare": ("compare", "compare_command", "Compare two result sets; exit 1 on a regression."),
    "history": ("history", "history_group", "Performance history across commits."),
    "list": ("list", "list_group", "List models, datasets, suites, procedures, plugins..."),
    "new-plugin": ("new_plugin", "new_plugin_command", "Write a ready-to-install plugin package."),
    "profile": ("profile", "profile_command", "Profile one step of a model with torch.profiler."),
    "report": ("report", "report_command", "Render the tables of stored results files."),
    "rerun": ("rerun", "rerun_command", "Repeat one recorded run and check its numbers."),
    "run": ("run", "run_command", "Run a suite, or train models on datasets and test them."),
    "time": ("time", "time_command", "Time forward, backward and training steps of a model."),
}


class BenchGroup(click.Group):
    """Loads each command on first use; turns user errors into one clear line and exit code 2,
    without a traceback; Ctrl-C outside a suite's runs (which save what they finished and say
    how to resume) exits 130."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        return getattr(import_module(f"harness.cli.{module}"), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from :data:`COMMANDS`' summaries: listing imports no command."""
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_SIGNAL["SIGINT"])


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bench")
@plugin_option
def cli() -> None:
    """bench: benchmark PyTorch models: accuracy, speed, memory, FLOPs.

    \b
    Quick start:
      bench run --suite cnn-pruning      accuracy vs parameters removed (CPU, offline)
      bench run --suite quickstart       mlp vs cnn-small vs lenet5 on digits, < 1 min
      bench list models                  what can be benchmarked
      bench run --model lenet5 --dataset digits --epochs 10
    """


def main() -> None:
    cli(prog_name="bench")
