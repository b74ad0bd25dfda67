"""``bench history``: file result sets by commit, find where series changed, draw the dashboard."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tabulate import tabulate

from harness.errors import BenchError
from harness.reporting.tables import plural
from harness.results.store import results_path

if TYPE_CHECKING:
    from harness.history.archive import HistoryStore
    from harness.history.detect import Change, Detection, Quiet, Series


@click.group("history")
@click.option(
    "--history",
    "root",
    type=click.Path(path_type=Path, file_okay=False),
    help="The history directory [default: the settings file's history_dir, else .bench/history "
    "at the top of this git repository].",
)
@click.pass_context
def history_group(ctx, root) -> None:
    """Performance history across commits: add result sets, detect change points, a dashboard.

    \b
    Examples:
      bench history add results/cnn-pruning --commit "$(git rev-parse HEAD)" --branch main
      bench history add --manifest runs.txt          # lines: PATH COMMIT [DATE]
      bench history detect --metric 'forward*' --since HEAD~5
      bench history html site/
    """
    ctx.obj = {"root": root}


def _store(ctx) -> HistoryStore:
    from harness.comparing.settings_file import find_settings
    from harness.history.archive import HistoryStore, default_history_dir

    root = ctx.obj["root"] or find_settings().history_dir or default_history_dir()
    return HistoryStore(root)


@history_group.command("add")
@click.argument("results", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--manifest",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A file listing result sets, one a line: PATH COMMIT [DATE].",
)
@click.option("--commit", help="The commit RESULTS measured [default: the one each recorded].")
@click.option("--branch", help="Their branch, for the record.")
@click.option(
    "--date", help="ISO date that orders RESULTS [default: the commit's date in git, else the "
    "file's]."
)  # fmt: skip
@click.pass_context
def add_command(ctx, results, manifest, commit, branch, date) -> None:
    """File RESULTS (bench results files or directories, or pytest-benchmark JSON), and those a
    --manifest lists, each under its commit, in one go: every file is checked before any is
    filed. Adding the same file again changes nothing."""
    from harness.history.archive import Filing, checked_date, read_manifest

    if not results and manifest is None:
        raise BenchError("nothing to add: give RESULTS or --manifest FILE")
    date = checked_date(date, "--date") if date else None
    filings = [Filing(results_path(path), commit, branch, date) for path in results]
    filings += read_manifest(manifest, branch) if manifest else []
    for filing, (entry, new) in zip(filings, _store(ctx).add_all(filings), strict=True):
        state = "added" if new else "already there"
        click.echo(f"{state}: {filing.path} as {entry.commit[:12]} ({entry.date}) {entry.sha[:12]}")


@history_group.command("detect")
@click.option("--metric", metavar="GLOB", help="Only metrics matching GLOB (e.g. 'forward*').")
@click.option("--since", metavar="REF", help="Exit 1 only for regressions at or after REF.")
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
@click.option("--q", default=0.05, show_default=True, help="False discovery rate across series.")
@click.option("--min-effect", default=2.0, show_default=True, help="Smallest change, percent.")
@click.option(
    "--min-effect-pp", default=0.5, show_default=True, help="Of accuracies, percentage points."
)
@click.pass_context
def detect_command(ctx, metric, since, as_json, q, min_effect, min_effect_pp) -> None:
    """Find the commits where each series changed (E-Divisive means, each change tested between
    its neighbours, Benjamini-Hochberg across every series); for a series without one, its best
    split and how many commits a change of that size needs. A counter (operators, allocations,
    syncs...) is exact: each commit whose count moved beyond its threshold (the settings file's
    counter_thresholds) is a change, no test needed. Each regression of a timing run comes with
    the bench bisect command that finds its commit in its range. Exit 1 if a regression is found
    (at or after --since)."""
    from harness.comparing.settings_file import find_settings
    from harness.history.detect import build_series, detect

    store = _store(ctx)
    later = _since(store, since) if since else None
    series = build_series(store.points(), metric)
    if not series:
        raise BenchError(f"no series in {store.root}" + (f" match '{metric}'" if metric else ""))
    rules = find_settings().rules()
    with _log_progress(series) as fitted:
        detection = detect(series, q, min_effect, min_effect_pp, fitted, rules)
    offers = [_bisect_offer(store, change) for change in detection.changes]
    if as_json:
        document = detection.to_json()
        for change, offer in zip(document["changes"], offers, strict=True):
            change["bisect"] = offer
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(_text(detection))
        for change, offer in zip(detection.changes, offers, strict=True):
            if offer and change.direction == "regression":
                click.echo(f"bisect: {change.label} {change.metric}: {offer}")
    if detection.regressions(later):
        ctx.exit(1)


@history_group.command("html")
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--metric", metavar="GLOB", help="Only metrics matching GLOB.")
@click.option("--q", default=0.05, show_default=True, help="False discovery rate across series.")
@click.option("--min-effect", default=2.0, show_default=True, help="As for detect.")
@click.option("--min-effect-pp", default=0.5, show_default=True, help="As for detect.")
@click.pass_context
def html_command(ctx, out_dir, metric, q, min_effect, min_effect_pp) -> None:
    """Write OUT_DIR/index.html: every series with its change points, offline."""
    from harness.comparing.settings_file import find_settings
    from harness.history.dashboard import write_dashboard
    from harness.history.detect import build_series, detect

    store = _store(ctx)
    series = build_series(store.points(), metric)
    if not series:
        raise BenchError(f"no series in {store.root}")
    with _log_progress(series) as fitted:
        detection = detect(series, q, min_effect, min_effect_pp, fitted, find_settings().rules())
    path = write_dashboard(series, detection, out_dir)
    click.echo(f"dashboard: {path} ({len(series)} series)")


@history_group.command("rebuild")
@click.pass_context
def rebuild_command(ctx) -> None:
    """Make the index again from the stored files alone."""
    count = _store(ctx).rebuild()
    click.echo(f"index rebuilt: {plural(count, 'result set')}")


@contextmanager
def _log_progress(series: list[Series]) -> Iterator[Callable[[Series], None] | None]:
    """Where stderr is a log rather than a terminal, a line per series screened (a long
    history takes minutes); nothing on a terminal, where the answer is the progress."""
    from harness.comparing.verdicts import COUNT
    from harness.history.detect import MIN_COMMITS

    total = sum(len(one.commits) >= MIN_COMMITS and one.kind != COUNT for one in series)
    if sys.stderr.isatty() or not total:
        yield None
        return
    from harness.execution.log_progress import LogBar

    def fitted(one: Series) -> None:
        bar.set_postfix_str(f"{one.label} {one.metric}")
        bar.update()

    with LogBar(total, "bench history detect") as bar:
        yield fitted


def _since(store: HistoryStore, ref: str) -> set[str]:
    """The commits at or after REF: a commit (or its prefix, or a git name for it) in the
    history, or an ISO date."""
    from harness.results.environment import git_output

    entries = store.entries()
    commits = [entry.commit for entry in entries]
    resolved = git_output("rev-parse", "--verify", "-q", f"{ref}^{{commit}}")
    for i, commit in enumerate(commits):
        if commit.startswith(ref) or commit == resolved:
            return set(commits[i:])
    if ref[:4].isdigit() and ref[4:5] == "-":
        return {entry.commit for entry in entries if entry.date >= ref}
    latest = ", ".join(c[:12] for c in commits[-5:]) or "none"
    raise BenchError(f"--since {ref}: no such commit in the history (latest: {latest})")


def _bisect_offer(store: HistoryStore, change: Change) -> str | None:
    """The ``bench bisect`` command that finds the commit of ``change`` in its range, from the
    run as the later commit's result set measured it (None: not a timing run's)."""
    from harness.comparing.reproduce import bisect_command

    side = store.result_set(change.after_commit)
    if side is None:
        return None
    good, bad = change.before_commit, change.after_commit
    return bisect_command(side, change.label, change.metric, good, bad, change.exact)


def _text(detection: Detection) -> str:
    from harness.history.detect import MIN_COMMITS

    head = (
        f"{plural(detection.series_tested, 'series', 'series')} tested "
        f"({plural(detection.tests, 'segment')} tested for a change); q = {detection.q}, "
        f"effect >= max({detection.min_effect:g}% or {detection.min_effect_pp:g} pp, "
        "the series' noise)"
    )
    if detection.skipped:
        short = len(detection.skipped)
        head += f"; {short} series with fewer than {MIN_COMMITS} commits not tested"
    rows = [
        {
            "": c.direction,
            "series": c.label,
            "metric": c.metric,
            "machine": c.machine,
            "commits": f"{c.before_commit[:10]}..{c.after_commit[:10]}",
            "before": f"{c.before_median:.4g}",
            "after": f"{c.after_median:.4g}",
            "change": f"{c.change:+.2f} {c.unit}",
            "noise": f"{c.noise:.2f} {c.unit}",
            "p": "exact" if c.exact else f"{c.p_value:.1e}",
            "q": "exact" if c.exact else f"{c.q_value:.1e}",
        }
        for c in detection.changes
    ]
    table = tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True)
    parts = [head, table if rows else "no change points"]
    if detection.quiet:
        parts += [_quiet_text(detection)]
    return "\n".join(parts)


def _quiet_text(detection: Detection) -> str:
    """Each series without a change point: its best split, and what finding a change of that
    size would take."""
    rows = [
        {
            "series": quiet.best.label,
            "metric": quiet.best.metric,
            "machine": quiet.best.machine,
            "best split": f"{quiet.best.before_commit[:10]}..{quiet.best.after_commit[:10]}",
            "change": f"{quiet.best.change:+.2f} {quiet.best.unit}",
            "noise": f"{quiet.best.noise:.2f} {quiet.best.unit}",
            "p": f"{quiet.best.p_value:.1e}",
            "a change this size needs": _needed(quiet),
        }
        for quiet in detection.quiet
    ]
    table = tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True)
    count = plural(len(rows), "series", "series")
    return f"\nno change point in {count}; the best split of each:\n{table}"


def _needed(quiet: Quiet) -> str:
    from harness.history.changepoints import MOST_NEEDED, POWER

    if abs(quiet.best.change) < quiet.floor:
        return f"never: under the {quiet.floor:.2f} {quiet.best.unit} floor"
    if quiet.commits_needed is None:
        return f"more than {MOST_NEEDED} commits"
    return f"{quiet.commits_needed} commits after it ({POWER:.0%} power)"
