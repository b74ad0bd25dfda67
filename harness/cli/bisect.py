"""``bench bisect``: the first bad commit between two revisions, by ``bench ab`` sessions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from harness.cli._sessions import Request, session_options


@click.command("bisect")
@click.option("--good", required=True, metavar="REV", help="A revision without the regression.")
@click.option("--bad", required=True, metavar="REV", help="A later revision with it.")
@click.option(
    "--counters",
    is_flag=True,
    help="Judge only the counters (operators, allocations, syncs...), which are exact: each "
    "session measures each side once (one round).",
)
@session_options
@click.option(
    "--out", type=click.Path(path_type=Path), help="Output directory: a folder per session."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def bisect_command(ctx, good, bad, counters, out, as_json, **flags) -> None:
    """Find the first commit after --good up to --bad that regressed, in the repository here.

    The first session measures --bad against --good with bench ab: unless it is a regression,
    there is nothing to find. Each later session measures the commit halfway between the last
    known good and the first known bad against --good, so k commits take at most
    ceil(log2 k) + 1 sessions. A session without a clear verdict (contended, a failed run, a
    change not significant or within its noise) stops the search: "no verdict", with the range
    left, never a guessed commit. What is measured and how it is judged are bench ab's options
    (a model or suite, --metric, --threshold, --rounds...); --counters judges the exact
    counters alone, in one round per session. On timings keep at least 14 rounds (the default
    is 20): with fewer, one round of a worker that ran slow throughout keeps a real slowdown
    from being significant. The revisions are bench's own repository's or a plugin package's,
    as for bench ab's git: sides.

    \b
    Examples:
      bench bisect --good v1.2 --bad main --model lenet5 --batch-size 32 --mode forward
      bench bisect --good HEAD~16 --bad HEAD --model mine --counters --metric '*.operators'

    \b
    Exit codes: 0 the culprit found, 2 usage error, 3 no verdict.
    """
    from harness.comparing.ab.revisions import revision_commit
    from harness.comparing.ab.session import run_session
    from harness.comparing.ab.sides import resolve_side
    from harness.comparing.bisect import (
        Step,
        commits_between,
        most_sessions,
        search,
        step_verdict,
    )
    from harness.comparing.verdicts import MIN_ROUNDS
    from harness.execution.runner import default_out_dir
    from harness.measuring import COUNTERS

    if counters and not flags["metrics"]:
        flags["metrics"] = tuple(f"*.{counter}" for counter in COUNTERS)
    request = Request.of(flags, "bisect")
    out = out or default_out_dir(request.name)
    good_commit, bad_commit = revision_commit(good), revision_commit(bad)
    commits = commits_between(good_commit, bad_commit)
    shown = not (flags["quiet"] or as_json)
    done: list[str] = []

    def judge(commit: str) -> Step:
        done.append(commit)
        number = len(done)
        sides = [
            resolve_side(role, f"git:{rev}", out / "sides")
            for role, rev in (("baseline", good_commit), ("candidate", commit))
        ]
        session = request.session(ctx, sides, rounds=1 if counters else None)
        step_out = out / f"session-{number}-{commit[:12]}"
        outcome = run_session(
            session,
            step_out,
            request.rules,
            progress=shown and sys.stderr.isatty(),
            min_rounds=1 if counters else MIN_ROUNDS,
        )
        verdict, evidence = step_verdict(outcome.comparison)
        if not as_json:
            click.echo(f"session {number}: {commit[:12]} against {good_commit[:12]}: {verdict}")
            click.echo(f"  {evidence}")
        return Step(commit, verdict, evidence, step_out)

    if not as_json:
        click.echo(
            f"{len(commits)} commits after {good_commit[:12]} up to {bad_commit[:12]}: at most "
            f"{most_sessions(len(commits))} sessions"
        )
    found = search(good_commit, bad_commit, commits, judge)
    if as_json:
        click.echo(json.dumps(found.to_json(), indent=2))
    elif found.culprit:
        click.echo(f"first bad commit: {found.culprit} ({len(found.steps)} sessions)")
    else:
        click.echo(f"no verdict: {found.reason}")
    ctx.exit(0 if found.culprit else 3)
