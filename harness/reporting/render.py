"""``bench report``: the tables of one or more stored results files as markdown, CSV or JSON.

Nothing is re-run: each file's procedure (looked up in the plugin registry by the results'
``suite.procedure``) renders its own tables from the stored results, exactly as at the end of
``bench run``, and this module arranges them.

Side by side. Files are grouped by suite (name and procedure); within a group, each table is
merged over the files: every row gains a first column ``results`` naming its file, and rows of
the same configuration (the table's ``key`` columns) from different files sit next to each other,
in the order the configurations first appear. Markdown drops the ``results`` column when there is
a single file. CSV is one table: columns ``table`` (``suite/table``) and ``results`` first, then
the union of every table's columns (cells a table does not have are empty). JSON holds the files
with their environments, then the suites with their tables as lists of row objects.

CSV and JSON cells are numbers wherever the markdown shows one (:mod:`harness.reporting.cells`):
unrounded where the procedure kept them, ``mean ± std`` split into two columns, units in the column
names.

A procedure that exposes no tables as data (``Report.tables``) is reported with one generic row
per run: its configuration's scalar values, status and scalar metrics (timing records as their
median in ms); markdown then shows the procedure's own markdown for each file instead.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.planning.protocol import Report, Table
from harness.registry.specs import Registry
from harness.reporting.cells import numeric_rows
from harness.reporting.run_figures import RUN_PLOTS, plot_runs
from harness.reporting.tables import MISSING, failure_rows, markdown_table
from harness.results.run_settings import distinguishing_settings
from harness.results.store import RESULTS_NAME, load_results

ENVIRONMENT_FIELDS = (
    "device",
    "device_name",
    "cpu",
    "threads",
    "torch",
    "cuda",
    "python",
    "platform",
    "hostname",
    "git_commit",
    "bench_version",
)


@dataclass(frozen=True)
class Source:
    """One results file and the short label that names it in tables."""

    label: str
    path: Path
    results: dict[str, Any]

    @property
    def suite(self) -> tuple[str, str]:
        suite = self.results["suite"]
        return suite["name"], suite["procedure"]


@dataclass
class Section:
    """One suite's part of the report: its tables merged over the files that ran it."""

    name: str
    procedure: str
    description: str
    tables: list[Table]
    # A procedure without tables as data: its own markdown per file label, shown instead.
    own_markdown: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def load_sources(paths: Sequence[Path | str]) -> list[Source]:
    """Read every results file, refusing foreign or damaged ones, and label each."""
    paths = [Path(p) for p in paths]
    results = [load_results(path) for path in paths]
    return [
        Source(label, path, data)
        for label, path, data in zip(labels(paths), paths, results, strict=True)
    ]


def labels(paths: Sequence[Path]) -> list[str]:
    """Short unique names: the folder of ``.../NAME/results.json`` (or the file's stem), with as
    many parent folders as it takes to tell the files apart (``a/run``, ``b/run``)."""
    parts = []
    for path in paths:
        full = path.resolve()
        if full.name == RESULTS_NAME:
            full = full.parent
        elif full.is_file():
            full = full.with_suffix("")
        parts.append(full.parts)
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{p[-1]}#{i + 1}" for i, p in enumerate(parts)]  # the same file twice


def build(
    sources: Sequence[Source], registry: Registry, plots_dir: Path | None = None
) -> list[Section]:
    """Render every file's report through its procedure and merge them suite by suite.

    With ``plots_dir``, plots are regenerated there (in one folder per file when there are
    several files).
    """
    groups: dict[tuple[str, str], list[Source]] = {}
    for source in sources:
        groups.setdefault(source.suite, []).append(source)
    sections = []
    for (name, procedure), members in groups.items():
        reports = {}
        for source in members:
            plots = None if plots_dir is None else _plots_for(plots_dir, source, len(sources))
            reports[source.label] = _report(source, registry, plots)
        sections.append(_section(name, procedure, members, reports))
    return sections


def _plots_for(plots_dir: Path, source: Source, count: int) -> Path:
    return plots_dir if count == 1 else plots_dir / source.label


def _report(source: Source, registry: Registry, plots_dir: Path | None) -> Report:
    """The procedure's own report, or a generic one when no loaded plugin provides it."""
    name = source.results["suite"]["procedure"]
    if name not in registry.procedures:
        note = f"procedure '{name}' is not loaded here (load its plugin with --plugin)"
        table = replace(run_table(source.results), note=note)
        return Report(markdown=f"{markdown_table(table.rows)}\n\n_{note}_\n", tables=[table])
    report = registry.procedures.get(name).report(source.results, plots_dir)
    if plots_dir is not None:
        report.files.extend(plot_runs(source.results, plots_dir / RUN_PLOTS))
    return report


def _section(
    name: str, procedure: str, members: list[Source], reports: dict[str, Report]
) -> Section:
    per_source = {s.label: reports[s.label].tables or [run_table(s.results)] for s in members}
    names = list(dict.fromkeys(t.name for tables in per_source.values() for t in tables))
    settings = distinguishing_settings(
        {s.label: [run["config"] for run in s.results["runs"]] for s in members}
    )
    tables = [
        with_settings(
            merge([(label, t) for label, ts in per_source.items() for t in ts if t.name == table]),
            settings,
        )
        for table in names
    ]
    failures = failures_table(members)
    if failures.rows:
        tables.append(failures)
    return Section(
        name=name,
        procedure=procedure,
        description=members[0].results["suite"].get("description") or "",
        tables=tables,
        own_markdown={
            label: report.markdown for label, report in reports.items() if not report.tables
        },
        files=[path for report in reports.values() for path in report.files],
    )


def merge(tables: Sequence[tuple[str, Table]]) -> Table:
    """One table from the same table of several files: rows prefixed with their file's label,
    rows of the same configuration (``key``) next to each other in first-seen order."""
    first = tables[0][1]
    lined_up: dict[Any, list[dict[str, Any]]] = {}
    for label, table in tables:
        for index, row in enumerate(table.rows):
            key = tuple(row.get(c) for c in first.key) if first.key else (label, index)
            lined_up.setdefault(key, []).append({"results": label, **row})
    rows = [row for group in lined_up.values() for row in group]
    return Table(first.name, rows, key=first.key, note=first.note)


def with_settings(table: Table, settings: dict[str, dict[str, Any]]) -> Table:
    """A merged table with a column per setting that tells its files apart (``train.lr``: see
    :func:`harness.results.run_settings.distinguishing_settings`), after its key columns."""
    if not settings:
        return table
    rows = []
    for row in table.rows:
        head = {c: row[c] for c in row if c == "results" or c in table.key}
        cells = {key: values.get(row["results"]) for key, values in settings.items()}
        rows.append({**head, **cells, **row})
    return replace(table, rows=rows)


def run_table(results: dict[str, Any]) -> Table:
    """One row per run: its configuration's scalar values, status, scalar metrics, and timing
    records (``{"samples": ..., "median": ...}``) as their median in milliseconds."""
    rows = []
    for run in results["runs"]:
        row: dict[str, Any] = {"run": run["id"]}
        row.update({k: v for k, v in run["config"].items() if _scalar(v)})
        row["status"] = run["status"]
        for name, value in run["metrics"].items():
            if _scalar(value):
                row[name] = value
            elif isinstance(value, dict) and "samples" in value and "median" in value:
                row[f"{name} median ms"] = round(value["median"] * 1e3, 6)
        rows.append(row)
    return Table("runs", rows, key=("run",))


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def failures_table(sources: Sequence[Source]) -> Table:
    rows = [
        {"results": source.label, **row}
        for source in sources
        for row in failure_rows(source.results["runs"])
    ]
    return Table("runs that did not finish", rows)


def _columns(rows: Sequence[dict[str, Any]], drop: Sequence[str] = ()) -> list[str]:
    names = dict.fromkeys(c for row in rows for c in row)
    return [c for c in names if c not in drop]


def _filled(rows: Sequence[dict[str, Any]], columns: Sequence[str], empty: Any) -> list[dict]:
    return [{c: empty if row.get(c) is None else row[c] for c in columns} for row in rows]


def to_markdown(sources: Sequence[Source], sections: Sequence[Section]) -> str:
    """The whole report: files and environments once at the top, then each suite's tables."""
    parts = ["# bench report", markdown_table(_files_rows(sources)), "## Environment"]
    parts.append(markdown_table(_environment_rows(sources)))
    drop = ("results",) if len(sources) == 1 else ()
    for section in sections:
        parts.append(f"## {section.name} ({section.procedure})")
        if section.description:
            parts.append(section.description)
        for label, text in section.own_markdown.items():
            parts.append(f"### {label}\n\n{text.strip()}")
        for table in [] if section.own_markdown else section.tables:
            columns = _columns(table.rows, drop)
            parts.append(f"### {table.name}")
            parts.append(markdown_table(_filled(table.rows, columns, MISSING), columns))
            if table.note:
                parts.append(f"_{table.note}_")
        parts.extend(f"![{path.stem}]({path})" for path in section.files)
    return "\n\n".join(parts) + "\n"


def _files_rows(sources: Sequence[Source]) -> list[dict[str, Any]]:
    return [
        {
            "results": s.label,
            "file": str(s.path),
            "suite": s.suite[0],
            "procedure": s.suite[1],
            "status": s.results.get("status"),
            "runs": len(s.results["runs"]),
            "created": s.results.get("created_at"),
        }
        for s in sources
    ]


def _environment_rows(sources: Sequence[Source]) -> list[dict[str, Any]]:
    """One row per environment field, one column per file; fields that differ are marked."""
    rows = []
    for name in ENVIRONMENT_FIELDS:
        values = [s.results.get("environment", {}).get(name) for s in sources]
        differs = len(sources) > 1 and len({json.dumps(v) for v in values}) > 1
        row = {"": f"{name} ≠" if differs else name}
        row.update(
            {
                s.label: MISSING if v is None else str(v)
                for s, v in zip(sources, values, strict=True)
            }
        )
        rows.append(row)
    return rows


def to_csv(sections: Sequence[Section]) -> str:
    """Every table in one CSV: ``table`` and ``results`` columns first, then the union of all
    tables' columns."""
    rows = [
        {"table": f"{section.name}/{table.name}", **row}
        for section in sections
        for table in section.tables
        for row in numeric_rows(table.rows)
    ]
    columns = _columns(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_filled(rows, columns, ""))
    return buffer.getvalue()


def to_json(sources: Sequence[Source], sections: Sequence[Section]) -> str:
    document = {
        "files": [
            {**row, "environment": s.results.get("environment", {})}
            for s, row in zip(sources, _files_rows(sources), strict=True)
        ],
        "suites": [
            {
                "suite": section.name,
                "procedure": section.procedure,
                "tables": [
                    {
                        "name": t.name,
                        "key": list(t.key),
                        "note": t.note,
                        "rows": numeric_rows(t.rows),
                    }
                    for t in section.tables
                ],
                "plots": [str(path) for path in section.files],
            }
            for section in sections
        ],
    }
    return json.dumps(document, indent=2, default=str) + "\n"


def render(
    paths: Sequence[Path | str],
    registry: Registry,
    fmt: str = "markdown",
    plots_dir: Path | None = None,
) -> str:
    """The report of ``paths`` in ``fmt`` (one of :data:`FORMATS`)."""
    sources = load_sources(paths)
    return formatted(sources, build(sources, registry, plots_dir), fmt)


def formatted(sources: Sequence[Source], sections: Sequence[Section], fmt: str) -> str:
    if fmt == "csv":
        return to_csv(sections)
    if fmt == "json":
        return to_json(sources, sections)
    return to_markdown(sources, sections)
