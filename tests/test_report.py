"""bench report: every built-in procedure's tables from real (tiny) results files, in markdown,
CSV and JSON, one file or several side by side, plots on request, and any other procedure."""

import csv
import io
import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from test_compare import assert_valid_tables

from harness.cli import cli
from harness.execution.runner import run_suite
from harness.planning.protocol import Procedure, Report, Table
from harness.planning.suite_files import parse_suite
from harness.registry.loading import load_plugins
from harness.reporting.cells import Cell
from harness.reporting.render import Section, render, to_csv
from harness.reporting.run_figures import run_plots_note
from harness.reporting.tables import context_line, markdown_table, plural
from harness.results.store import load_results

DIGITS_8X8 = [{"name": "digits", "options": {"size": 8}}]
MLP_10 = [{"name": "mlp", "options": {"hidden": 10}}]
SUITES = {
    "accuracy": {"models": MLP_10, "datasets": DIGITS_8X8, "seeds": [0, 1], "train": {"epochs": 1}},
    "pruning": {
        "models": MLP_10,
        "datasets": DIGITS_8X8,
        "train": {"epochs": 1},
        "pruning": {
            "methods": ["random", "scratch"],
            "targets": [50],
            "finetune_epochs": 0,
            "latency_batch": 4,
        },
    },
    "throughput": {
        "models": MLP_10,
        "datasets": [{"name": "synthetic", "options": {"samples": 8}}],
        "throughput": {
            "batch_sizes": [1, 4],
            "devices": ["cpu"],
            "quick": True,
            "threads": 1,
            "modes": ["forward", "train_step"],
        },
    },
}
TABLE_COLUMNS = {
    "accuracy": ["model", "dataset", "params", "test acc %", "val acc %", "seeds"],
    "pruning": ["model", "method", "target %", "achieved %", "acc after FT %"],
    "throughput": ["model", "batch", "forward (IQR) ms", "train step (IQR) ms", "peak mem MiB"],
}


@pytest.fixture(scope="module")
def results_files(registry, tmp_path_factory):
    """One real results file per built-in procedure, from a tiny suite (seconds in all)."""
    files = {}
    for procedure, data in SUITES.items():
        suite = parse_suite(
            {"procedure": procedure, **data}, registry, source="test", default_name=procedure
        )
        out = tmp_path_factory.mktemp(procedure)
        outcome = run_suite(suite, registry, out_dir=out / "run", quiet=True, command=[])
        assert all(r["status"] == "ok" for r in outcome.store.runs)
        files[procedure] = outcome.store.path
    return files


def bench_report(*args):
    result = CliRunner().invoke(cli, ["report", *map(str, args)])
    return result.exit_code, result.output


@pytest.mark.parametrize("procedure", list(SUITES))
def test_markdown_report_of_each_builtin_procedure(results_files, procedure):
    code, text = bench_report(results_files[procedure])
    assert code == 0
    assert text.startswith("# bench report\n") and "## Environment" in text
    assert f"## {procedure} ({procedure})" in text and f"### {procedure}" in text
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert "results" not in header  # one file: no column naming it
    assert all(column in header for column in TABLE_COLUMNS[procedure])
    assert text.count("| torch ") == 1  # the environment once, at the top
    assert assert_valid_tables(text) == 3  # files, environment, the procedure's table


NUMERIC_COLUMNS = {
    "accuracy": ["params", "FLOPs/sample", "test acc %", "test acc % std", "seeds ok"],
    "pruning": ["target %", "achieved %", "params total", "params nonzero", "acc after FT %"],
    "throughput": ["batch", "params", "forward median ms", "forward IQR ms", "peak mem MiB"],
}


@pytest.mark.parametrize("procedure", list(SUITES))
def test_csv_and_json_hold_the_markdown_tables_numbers_as_numbers(
    registry, results_files, procedure
):
    """The markdown's cells ('61,706', '97.3 ± 2.0', '1.20M') are numbers in CSV and JSON, with
    the units in the column names, and both formats hold the same rows."""
    path = results_files[procedure]
    text = render([path], registry, "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    document = json.loads(render([path], registry, "json"))
    (suite,) = document["suites"]
    (table,) = suite["tables"]
    assert table["name"] == procedure and table["rows"] and len(rows) == len(table["rows"])
    for csv_row, json_row in zip(rows, table["rows"], strict=True):
        assert csv_row["table"] == f"{procedure}/{procedure}" and csv_row["results"] == "run"
        assert all(csv_row[k] == ("" if v is None else str(v)) for k, v in json_row.items())
        for column in NUMERIC_COLUMNS[procedure]:
            value = json_row[column]
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (column, value)
    frame = pd.read_csv(io.StringIO(text))
    assert all(pd.api.types.is_numeric_dtype(frame[c]) for c in NUMERIC_COLUMNS[procedure])
    assert frame["model"].tolist() == [r["model"] for r in table["rows"]]  # text stays text
    (source,) = document["files"]
    assert source["environment"] == load_results(path)["environment"]


def test_accuracy_seeds_aggregate_in_every_format(registry, results_files):
    """Unrounded: the JSON mean and std are those of the stored accuracies, in percent."""
    path = results_files["accuracy"]
    document = json.loads(render([path], registry, "json"))
    (row,) = document["suites"][0]["tables"][0]["rows"]
    accuracies = [100 * r["metrics"]["test_accuracy"] for r in load_results(path)["runs"]]
    assert row["seeds ok"] == 2 and row["seeds run"] == 2
    assert row["test acc %"] == pytest.approx(statistics.mean(accuracies), abs=1e-9)
    assert row["test acc % std"] == pytest.approx(statistics.stdev(accuracies), abs=1e-9)
    assert row["params"] == load_results(path)["runs"][0]["metrics"]["params"]
    code, text = bench_report(path)  # the markdown is as it was
    assert code == 0 and f"{row['test acc %']:.1f} ± {row['test acc % std']:.1f}" in text
    assert f"| {row['params']:,} " in text and "| 2/2 " in text


def test_two_files_side_by_side(registry, results_files, tmp_path):
    """The same suite from two files (two machines, two commits): one table, a results column,
    the rows of one configuration next to each other; the environment differences are marked."""
    first = results_files["throughput"]
    data = load_results(first)
    data["environment"] = {**data["environment"], "hostname": "other-machine"}
    data["runs"] = data["runs"][::-1]  # another order: lined up by configuration anyway
    second = tmp_path / "other" / "results.json"
    second.parent.mkdir()
    second.write_text(json.dumps(data))

    code, text = bench_report(first, second)
    assert code == 0 and assert_valid_tables(text) == 3
    assert "| hostname ≠ " in text and "| torch  " in text
    header, _, *rows = text.split("### throughput\n\n")[1].split("\n\n")[0].splitlines()
    cells = [[cell.strip() for cell in row.split("|")[1:-1]] for row in [header, *rows]]
    assert cells[0][:2] == ["results", "model"]
    batch = cells[0].index("batch")
    assert [(row[0], row[batch]) for row in cells[1:]] == [
        ("run", "1"),
        ("other", "1"),
        ("run", "4"),
        ("other", "4"),
    ]

    rows = list(csv.DictReader(io.StringIO(render([first, second], registry, "csv"))))
    assert [(r["results"], r["batch"]) for r in rows] == [
        ("run", "1"),
        ("other", "1"),
        ("run", "4"),
        ("other", "4"),
    ]
    document = json.loads(render([first, second], registry, "json"))
    assert [f["results"] for f in document["files"]] == ["run", "other"]


def test_side_by_side_shows_the_settings_that_tell_the_files_apart(registry, runs_differing_in_lr):
    """Two runs of one model that differ in lr: a train.lr column holds each file's, after the
    key columns, in every format; a single file gets no such column."""
    first, second = runs_differing_in_lr
    code, text = bench_report(first, second)
    assert code == 0
    header, _, *rows = text.split("### accuracy\n\n")[1].split("\n\n")[0].splitlines()
    cells = [[cell.strip() for cell in row.split("|")[1:-1]] for row in [header, *rows]]
    assert cells[0][:4] == ["results", "model", "dataset", "train.lr"]
    assert [row[3] for row in cells[1:]] == ["0.01", "0.05"]
    rows = list(csv.DictReader(io.StringIO(render([first, second], registry, "csv"))))
    assert [float(row["train.lr"]) for row in rows] == [0.01, 0.05]
    assert "train.lr" not in bench_report(first)[1]


def test_different_suites_get_their_own_sections_and_csv_columns(registry, results_files):
    paths = [results_files["accuracy"], results_files["throughput"]]
    text = render(paths, registry)
    assert "## accuracy (accuracy)" in text and "## throughput (throughput)" in text
    rows = list(csv.DictReader(io.StringIO(render(paths, registry, "csv"))))
    assert {r["table"] for r in rows} == {"accuracy/accuracy", "throughput/throughput"}
    # both folders are named run: their parents tell them apart
    assert [r["results"] for r in rows] == ["accuracy0/run", "throughput0/run", "throughput0/run"]
    throughput = [r for r in rows if r["table"] == "throughput/throughput"]
    assert throughput[0]["test acc %"] == "" and float(throughput[0]["forward median ms"]) > 0


def test_the_same_file_twice_is_told_apart(registry, results_files):
    path = results_files["accuracy"]
    document = json.loads(render([path, path.parent], registry, "json"))
    assert [f["results"] for f in document["files"]] == ["run#1", "run#2"]


def test_plots_are_regenerated_on_request_only(results_files, tmp_path):
    code, text = bench_report(results_files["pruning"])
    assert code == 0 and "![" not in text
    plots = tmp_path / "plots"
    code, text = bench_report(results_files["pruning"], "--plots", plots)
    (plot,) = plots.glob("pruning-*.png")  # the procedure's own, in the report
    assert code == 0 and f"![{plot.stem}]({plot})" in text and f"plot:    {plot}" in text
    # and each trained configuration's loss curves, listed beside it
    curves = sorted(plots.glob("runs/loss-*.png"))
    assert [c.name for c in curves] == [
        "loss-mlp-digits-dense.png",
        "loss-mlp-digits-scratch-50.0.png",
    ]
    for path in (plot, *curves):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plot:    {path}" in text
    # a suite whose procedure draws none says so rather than leaving DIR empty unexplained
    code, text = bench_report(results_files["throughput"], "--plots", tmp_path / "none")
    assert code == 0 and "plots: none, the throughput procedure draws no plots" in text


def test_out_writes_the_report_to_a_file(results_files, tmp_path):
    out = tmp_path / "reports" / "table.csv"
    code, output = bench_report(results_files["accuracy"], "--format", "csv", "--out", out)
    assert code == 0 and f"report: {out}" in output
    assert out.read_text().startswith("table,results,model,dataset")


def test_a_procedure_without_tables_is_reported_with_its_own_markdown(results_files):
    """Any registered procedure works: one that gives no tables as data keeps its markdown, and
    CSV/JSON get one generic row per run."""
    data = load_results(results_files["accuracy"])
    registry = load_plugins().registry
    registry.procedures.add(
        Procedure(
            name="custom",
            description="a plugin's procedure",
            plan=lambda suite, registry: [],
            execute=lambda run, ctx: {},
            report=lambda results, plots_dir: Report(markdown="## custom report\n\nits text\n"),
        ),
        "test",
    )
    data["suite"]["procedure"] = "custom"
    path = results_files["accuracy"].parent.parent / "custom.json"
    path.write_text(json.dumps(data))

    text = render([path], registry)
    assert "## accuracy (custom)" in text and "### custom\n\n## custom report\n\nits text" in text
    (table,) = json.loads(render([path], registry, "json"))["suites"][0]["tables"]
    assert table["name"] == "runs" and len(table["rows"]) == 2
    row = table["rows"][0]
    assert row["model"] == "mlp" and row["status"] == "ok" and 0 <= row["test_accuracy"] <= 1
    assert "history" not in row  # only scalar metrics

    unknown = render([path], load_plugins().registry)  # no plugin provides "custom" here
    assert "procedure 'custom' is not loaded here" in unknown and "| test_accuracy" in unknown


def test_timing_records_become_medians_in_the_generic_table(registry, results_files):
    data = load_results(results_files["throughput"])
    data["suite"]["procedure"] = "not-registered"
    path = results_files["throughput"].parent.parent / "unknown.json"
    path.write_text(json.dumps(data))
    rows = list(csv.DictReader(io.StringIO(render([path], registry, "csv"))))
    assert len(rows) == 2 and float(rows[0]["forward median ms"]) > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no results file at"), ("", "is not valid JSON"), ("[1, 2]", "not a bench results")],
)
def test_unreadable_files_are_usage_errors(tmp_path, content, message):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    code, output = bench_report(path)
    assert code == 2 and message in output and "Traceback" not in output


def test_csv_numbers_are_the_shortest_text_of_the_number_without_float_noise():
    """A cell's arithmetic (a fraction times 100, seconds times 1000) leaves noise in a double's
    last digits; CSV and JSON write the number it stands for, every measured digit kept."""
    rows = [
        {
            "model": "a",
            "acc %": Cell("30.0", {"": (0.1 + 0.2) * 100}),
            "forward median ms": 0.000123456789012 * 1e3,
            "params": 16_460,
            "tiny": 1.2345678901e-9,
        }
    ]
    section = Section("s", "p", "", [Table("t", rows)])
    (row,) = csv.DictReader(io.StringIO(to_csv([section])))
    assert row["acc %"] == "30.0" and row["forward median ms"] == "0.123456789012"
    assert row["params"] == "16460" and row["tiny"] == "1.2345678901e-09"


def test_a_count_of_one_is_singular_in_every_line_that_counts():
    assert [plural(n, "thread") for n in (0, 1, 2, 1200, None)] == [
        "0 threads",
        "1 thread",
        "2 threads",
        "1,200 threads",
        "? threads",
    ]
    assert plural(1, "series", "series") == "1 series" == plural(1, "series")
    assert plural(3, "series", "series") == "3 series"
    assert "torch 2.4, 1 thread, commit" in context_line(
        {"environment": {"torch": "2.4", "threads": 1}}
    )
    assert "): 1 PNG in `runs/`" in run_plots_note([Path("runs/loss-mlp.png")])


def test_no_table_reads_nan():
    """A row without a column, or with a value that is not a number, shows a dash."""
    table = markdown_table([{"model": "a", "acc": 0.9}, {"model": "b", "loss": math.nan}])
    assert "nan" not in table.lower() and table.count("—") == 3
