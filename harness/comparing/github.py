"""GitHub Actions: when ``bench compare`` or ``bench ab`` runs in a workflow
(``GITHUB_ACTIONS=true``), each failing regression becomes an ``::error`` annotation on the
job, with its reproduce command, and the markdown verdict is added to the job's summary page
(``GITHUB_STEP_SUMMARY``). Annotations go to stderr, which the runner reads as it reads stdout,
so that ``--json`` output stays one JSON object.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from harness.comparing.matching import Comparison
from harness.comparing.output import change_text, to_markdown
from harness.comparing.reproduce import reproduce_command


def report_to_github(
    comparison: Comparison,
    environ: Mapping[str, str] = os.environ,
    stream: TextIO | None = None,
) -> None:
    """Annotate the job and fill its summary, if this runs in GitHub Actions."""
    if environ.get("GITHUB_ACTIONS") != "true":
        return
    stream = stream or sys.stderr
    for row in comparison.rows:
        if not row.fails:
            continue
        command = reproduce_command(comparison, row)
        message = f"{row.config} {row.metric} {change_text(row)} ({row.test})"
        message += f"; reproduce: {command}" if command else ""
        title = f"bench: {row.metric} regressed"
        print(f"::error title={_escape(title, True)}::{_escape(message)}", file=stream)
    summary = environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with Path(summary).open("a", encoding="utf-8") as handle:
            handle.write(to_markdown(comparison))


def _escape(text: str, property_value: bool = False) -> str:
    """A workflow command's data (or property value), escaped as the runner reads it back."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_value else text
