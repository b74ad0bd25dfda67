"""bench from Python: the API runs, times, loads, reports and compares like the CLI, raises
BenchError where the CLI exits 2, and gives typed DataFrames; report cells keep their numbers;
the example notebook runs end to end."""

import io
import json
import pickle
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from harness import api as bench
from harness.errors import BenchError
from harness.reporting.cells import Cell, numbers_of, numeric_rows
from harness.reporting.tables import count, human, pct

NOTEBOOK = Path(__file__).parents[1] / "examples" / "bench-api.ipynb"
DIGITS_8X8 = {"size": 8}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "train"
    return bench.run(
        models=["mlp"],
        datasets=["digits"],
        model_options={"hidden": [16]},
        dataset_options=DIGITS_8X8,
        train={"epochs": 2},
        seeds=[0, 1],
        threads=1,
        out=out,
        quiet=True,
    )


def test_run_returns_the_results_it_wrote(trained):
    assert trained.status == "complete" and not trained.failures
    assert trained.path.is_file()
    assert json.loads(json.dumps(trained.data)) == json.loads(trained.path.read_text())
    assert [r["config"]["seed"] for r in trained.runs] == [0, 1]
    assert repr(trained).endswith(": 2/2 runs ok>")
    # in Jupyter the object shows the report's table, the markdown bench run prints
    assert trained._repr_markdown_() == trained.markdown
    assert "| model " in trained.markdown and "| mlp " in trained.markdown


def test_the_runs_frame_has_one_typed_row_per_run(trained):
    frame = trained.frame()
    assert list(frame["run"]) == [r["id"] for r in trained.runs]
    expected = {
        "run": "string",
        "status": "string",
        "model": "string",
        "seed": "Int64",
        "params": "Int64",
        "test_accuracy": "Float64",
        "train.epochs": "Int64",
        "train.lr": "Float64",
        "split_sizes.train": "Int64",
        "wall_time_s": "Float64",
    }
    assert {c: str(frame[c].dtype) for c in expected} == expected
    accuracies = [r["metrics"]["test_accuracy"] for r in trained.runs]
    assert frame["test_accuracy"].tolist() == accuracies
    assert "history" not in frame.columns  # lists are the long form's


def test_the_history_frame_is_long_one_row_per_run_and_epoch(trained):
    history = trained.history()
    assert len(history) == 4  # 2 runs x 2 epochs
    assert history[["run", "epoch"]].values.tolist() == [
        [run["id"], epoch] for run in trained.runs for epoch in (1, 2)
    ]
    assert str(history["val_loss"].dtype) == "Float64" and str(history["epoch"].dtype) == "Int64"
    first = trained.runs[0]["metrics"]["history"][0]
    assert history.iloc[0]["train_loss"] == first["train_loss"]


def test_report_tables_as_numbers(trained):
    (table,) = trained.tables().values()
    row = table.iloc[0]
    assert row["params"] == trained.runs[0]["metrics"]["params"]
    assert str(table["test acc %"].dtype) == "Float64" and row["seeds ok"] == 2


def test_load_report_and_compare_stored_results(trained):
    loaded = bench.load(trained.path.parent)
    assert loaded.data == json.loads(json.dumps(trained.data))
    assert loaded.markdown.strip() in trained.markdown  # which adds where its plots went
    assert bench.report(trained.path).startswith("# bench report\n")
    numbers = pd.read_csv(io.StringIO(bench.report(trained.path, format="csv")))
    assert pd.api.types.is_numeric_dtype(numbers["test acc %"])
    same = bench.compare(trained.path, trained.path)
    assert same.exit_code == 0 and not same.regressions and len(same.frame()) > 0
    assert same._repr_markdown_().startswith("#")


def test_time_measures_alone_and_gives_seconds(tmp_path):
    timed = bench.time(
        ["mlp"],
        model_options={"hidden": [8]},
        batch_sizes=[4],
        modes=["forward"],
        quick=True,
        threads=1,
        out=tmp_path / "t",
        quiet=True,
    )
    (record,) = timed.runs
    frame = timed.frame()
    assert frame.loc[0, "forward.median_s"] == record["metrics"]["forward"]["median"]
    assert frame.loc[0, "forward.n"] == len(record["metrics"]["forward"]["samples"])
    assert str(frame["forward.iqr_s"].dtype) == "Float64"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: bench.run(models=["mlpp"], datasets=["digits"]), "Did you mean 'mlp'"),
        (lambda: bench.run("no-such-suite"), "no-such-suite"),
        (lambda: bench.run(models=["mlp"], out="a", resume="b"), "cannot be combined"),
        (
            lambda: bench.run(models=["mlp"], datasets=["digits"], model_options={"hiden": 3}),
            "unknown option",
        ),
        (lambda: bench.time(["mlp"], modes=["sideways"]), "sideways"),
        (lambda: bench.load("/no/such/results"), "no results file"),
        (lambda: bench.report("/no/such/results", format="xml"), "unknown report format"),
        (lambda: bench.compare("a", "b", thresholds="5%"), "lists of strings"),
        (lambda: bench.run(models=["mlp"], plugins=["/no/such/plugin.py"]), "no such file"),
        (
            lambda: bench.run(models=["mlp"], datasets=["digits"], sinks=["nowhere"]),
            "Known result sinks",
        ),
    ],
)
def test_errors_are_exceptions_with_the_clis_message(call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BenchError, match=message):
        call()
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_cells_carry_their_numbers():
    assert numbers_of(pct([0.9, 0.95])) == {
        "": pytest.approx(92.5),
        " std": pytest.approx(3.5355, abs=1e-4),
    }
    assert numbers_of(human(1_234_567)) == {"": 1_234_567} and human(1_234_567) == "1.23M"
    assert count(61706) == "61,706" and numbers_of(count(61706)) == {"": 61706}
    assert pickle.loads(pickle.dumps(count(5))).numbers == {"": 5}  # plots run in workers
    parsed = {
        "16,962": {"": 16962},
        "-0.5": {"": -0.5},
        "+1.2": {"": 1.2},
        "97.3 ± 2.0": {"": 97.3, " std": 2.0},
        "3.1x": {" (x)": 3.1},
        "1.5K": {"": 1500.0},
        "—": {},
        "lenet5": {"": "lenet5"},
        "all (129)": {"": "all (129)"},
    }
    assert {text: numbers_of(text) for text in parsed} == parsed


def test_numeric_rows_give_every_row_the_same_columns():
    rows = numeric_rows(
        [
            {"model": "a", "speed-up": "2.0x", "acc %": Cell("90.0 ± 1.0", {"": 90, " std": 1})},
            {"model": "b", "speed-up": "—", "acc %": Cell("80.0", {"": 80})},
        ]
    )
    assert rows == [
        {"model": "a", "speed-up (x)": 2.0, "acc %": 90, "acc % std": 1},
        {"model": "b", "speed-up (x)": None, "acc %": 80, "acc % std": None},
    ]


@pytest.mark.slow
def test_the_example_notebook_runs_end_to_end(tmp_path, monkeypatch):
    """Executed in a real Jupyter kernel: no cell fails, the results show as a markdown table,
    the runs as a progress widget, and both plots are drawn."""
    monkeypatch.setenv("BENCH_EXAMPLE_OUT", str(tmp_path / "out"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    kinds = [kind for o in outputs for kind in o.get("data", {})]
    assert not [o for o in outputs if o.output_type == "error"]
    assert kinds.count("image/png") == 2
    assert "application/vnd.jupyter.widget-view+json" in kinds
    markdown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert any("| lenet5 " in text for text in markdown)
    results = sorted(p.parent.name for p in (tmp_path / "out").glob("*/results.json"))
    assert results == ["prune", "time", "train"]
    for path in (tmp_path / "out").glob("*/results.json"):
        assert all(r["status"] == "ok" for r in json.loads(path.read_text())["runs"])


def docs_python(page: str) -> list[str]:
    """The ```python blocks of one documentation page (``guides/python.md``)."""
    text = (NOTEBOOK.parents[1] / "docs" / page).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.slow
def test_the_docs_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (code,) = docs_python("guides/python.md")
    exec(compile(code, "docs/guides/python.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "| lenet5 " in printed and "forward.median_s" in printed
    assert "global-magnitude" in printed and printed.rstrip().endswith("\n0")
    assert len(list((tmp_path / "results").glob("*/results.json"))) == 3
