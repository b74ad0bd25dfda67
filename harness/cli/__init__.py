"""The ``bench`` command line: a thin layer that parses, calls the library and prints."""

from __future__ import annotations

import sys

import click

from harness import __version__
from harness.cli.ab import ab_command
from harness.cli.common import EXIT_SIGNAL, plugin_option
from harness.cli.history import history_group
from harness.cli.listing import list_group
from harness.cli.reporting import compare_command, report_command
from harness.cli.rerun import rerun_command
from harness.cli.running import run_command
from harness.cli.scaffold import new_plugin_command
from harness.cli.timing import profile_command, time_command
from harness.options import BenchError


class BenchGroup(click.Group):
    """Turns user errors into one clear line and exit code 2, without a traceback; Ctrl-C
    outside a suite's runs (which save what they finished and say how to resume) exits 130."""

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


cli.add_command(list_group)
cli.add_command(run_command)
cli.add_command(new_plugin_command)
cli.add_command(time_command)
cli.add_command(profile_command)
cli.add_command(report_command)
cli.add_command(compare_command)
cli.add_command(ab_command)
cli.add_command(rerun_command)
cli.add_command(history_group)


def main() -> None:
    cli(prog_name="bench")
