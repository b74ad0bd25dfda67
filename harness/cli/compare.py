"""``bench compare``: a regression verdict from two stored result sets, with an exit code."""

from __future__ import annotations

from pathlib import Path

import click

from harness.results.store import atomic_write_text


@click.command("compare")
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="[GLOB=]VALUE",
    help="Regression threshold: N% for timings (default 10%), Npp for accuracies (default "
    "1.0pp); GLOB=VALUE for matching metrics only (repeatable; the last match wins, after "
    "the settings file's).",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="GLOB",
    help="Compare only metrics matching GLOB, e.g. 'train_step*'; for pytest-benchmark files "
    "the benchmark's name, e.g. 'test_train_step*' (repeatable).",
)
@click.option(
    "--gate",
    multiple=True,
    metavar="GLOB",
    help="Only metrics matching GLOB decide the exit code; the others are reported (repeatable; "
    "replaces the settings file's gate; default every metric).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail noisy regressions within their noise too (exit 1), and different machines or "
    "software (exit 3).",
)
@click.option(
    "--markdown-out",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Also write a markdown summary fit for a pull-request comment.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, not a table.")
@click.pass_context
def compare_command(
    ctx, baseline, candidate, thresholds, metrics, gate, strict, markdown_out, as_json
):
    """Compare CANDIDATE results against BASELINE; the exit code is the verdict.

    Both are bench results files (or their directories), or both pytest-benchmark JSON files.
    Runs are matched by configuration (seeds apart); unmatched ones are listed. A timing
    regresses when its median is worse by more than the threshold, a one-sided Mann-Whitney
    U test on the raw samples gives p < 0.01 (non-overlapping 99% confidence intervals of the
    mean when samples are too few or were not saved) and, if a side is noisy (IQR/median >
    25%), the distributions are separated; a noisy slowdown within its noise is reported, not
    failed, unless --strict. A verdict that contention could have produced or hidden (a
    slower contended candidate; a contended baseline) is no verdict. Files of one `bench ab`
    session are judged round by round (Wilcoxon signed-rank test, 5% threshold). An accuracy
    regresses when its mean over seeds drops by more than the threshold and by more than twice
    the standard error of the difference. Thresholds and the gate also come from the project's
    settings file ([tool.bench] in pyproject.toml, or bench.toml), which the flags override.
    Each step timing's counters (operators, allocations, syncs...) are judged exactly: a
    count grown beyond its threshold is a regression whatever the noise. A regression of a
    timing run comes with the `bench ab` command between the files' commits that shows it
    again; in GitHub Actions each becomes an ::error annotation and the verdict goes to the
    job summary.

    \b
    Exit codes:
      0  no regression (noisy ones within their noise are reported, not failed)
      1  a regression (of a gated metric)
      2  usage error: a file missing, empty, truncated or not a results file;
         a malformed option or settings file
      3  no trustworthy verdict: one that contention could have produced or
         hidden, nothing comparable, a failed run or an unfinished file; with
         --strict, also different machines, devices, thread counts or torch
         versions

    \b
    Examples:
      bench compare results/base results/candidate
      bench compare base.json new.json --threshold 5% --threshold 'train_step*=3%' \\
                    --metric 'train_step*' --markdown-out summary.md
    """
    from harness.comparing.github import report_to_github
    from harness.comparing.matching import compare_files
    from harness.comparing.output import to_json, to_markdown, to_text
    from harness.comparing.settings_file import find_settings

    rules = find_settings().rules(thresholds, metrics, strict, gate)
    comparison = compare_files(baseline, candidate, rules)
    click.echo(to_json(comparison) if as_json else to_text(comparison), nl=False)
    if markdown_out:
        atomic_write_text(markdown_out, to_markdown(comparison))
    report_to_github(comparison)
    ctx.exit(comparison.exit_code)
