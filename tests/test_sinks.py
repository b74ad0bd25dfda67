"""Result sinks: a plugin's sink receives each run's record once the results file holds it, and
the end of the suite; a failing sink costs nothing; the built-in TensorBoard sink writes event
files that TensorBoard's own reader reads back, with the HParams of a grid."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from harness.cli import cli

RECORDER = """
import json
from pathlib import Path

from harness import hookimpl
from harness.results.sinks import SinkSpec


class Recorder:
    def __init__(self, context):
        self.log = Path(context.target)
        self.results = context.out_dir / "results.json"

    def _write(self, entry):
        with self.log.open("a") as log:
            log.write(json.dumps(entry) + "\\n")

    def record(self, run, results):
        on_disk = [r["id"] for r in json.loads(self.results.read_text())["runs"]]
        self._write({"run": run["id"], "status": run["status"], "on_disk": run["id"] in on_disk,
                     "suite": results["suite"]["name"]})

    def close(self, results):
        self._write({"closed": results["status"], "runs": len(results["runs"])})


class Broken:
    def record(self, run, results):
        raise RuntimeError("tracker is down")

    def close(self, results):
        raise AssertionError("a dropped sink is not closed")


@hookimpl
def register_result_sinks(register):
    register(SinkSpec("recorder", "writes what it is told to TARGET", Recorder, needs_target=True))
    register(SinkSpec("broken", "fails at the first run", lambda context: Broken()))
"""
TINY = [
    "--model", "mlp", "--model-opt", "hidden=8", "--dataset", "digits", "--dataset-opt", "size=8",
    "--epochs", "2", "--seed", "0", "--seed", "1", "--threads", "1", "-q",
]  # fmt: skip


@pytest.fixture
def recorder(tmp_path):
    path = tmp_path / "recorder_plugin.py"
    path.write_text(RECORDER)
    return path


def bench(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output, result.stderr


def test_a_plugins_sink_gets_each_record_after_it_is_written_then_the_end(recorder, tmp_path):
    log = tmp_path / "log.jsonl"
    code, _, _ = bench("run", *TINY, "--plugin", recorder, "--sink", f"recorder={log}",
                       "--out", tmp_path / "out")  # fmt: skip
    assert code == 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries == [
        {"run": "000-mlp-digits-s0", "status": "ok", "on_disk": True, "suite": "mlp-digits"},
        {"run": "001-mlp-digits-s1", "status": "ok", "on_disk": True, "suite": "mlp-digits"},
        {"closed": "complete", "runs": 2},
    ]
    code, listing, _ = bench("list", "sinks", "--plugin", recorder)
    assert code == 0 and "| recorder=TARGET " in listing and "| tensorboard=TARGET " in listing


def test_a_failing_sink_is_dropped_and_the_suite_goes_on(recorder, tmp_path):
    log = tmp_path / "log.jsonl"
    code, _, stderr = bench("run", *TINY, "--plugin", recorder, "--sink", "broken",
                            "--sink", f"recorder={log}", "--out", tmp_path / "out")  # fmt: skip
    assert code == 0
    assert stderr.count("result sink 'broken' failed and was dropped") == 1
    assert "RuntimeError: tracker is down" in stderr and "results file is unaffected" in stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["status"] == "complete" and [r["status"] for r in results["runs"]] == ["ok"] * 2
    assert len(log.read_text().splitlines()) == 3  # the other sink heard everything


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--sink", "mlflow"], "unknown result sink 'mlflow'"),
        (["--sink", "tensorboard"], "--sink tensorboard needs a target"),
        (["--sink", "tensorboard="], "give NAME or NAME=TARGET"),
    ],
)
def test_bad_sinks_are_refused_before_any_run(flags, message, tmp_path):
    code, output, stderr = bench("run", *TINY, *flags, "--out", tmp_path / "out")
    assert code == 2 and message in output + stderr
    assert not (tmp_path / "out").exists()


def events(directory: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_scalars_per_epoch_for_every_run(tmp_path):
    code, _, _ = bench("run", *TINY, "--tensorboard", tmp_path / "tb", "--out", tmp_path / "r")
    assert code == 0
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    for run in results["runs"]:
        board = events(tmp_path / "tb" / "r" / run["id"])
        history = run["metrics"]["history"]
        for key, tag in (("train_loss", "loss/train"), ("val_accuracy", "accuracy/val")):
            values = [(e.step, e.value) for e in board.Scalars(tag)]
            assert values == [(h["epoch"], pytest.approx(h[key])) for h in history]
        (test,) = board.Scalars("accuracy/test")
        assert test.value == pytest.approx(run["metrics"]["test_accuracy"]) and test.step == 2
        with pytest.raises(KeyError):  # not a grid: no HParams
            board.PluginTagToContent("hparams")


def test_tensorboard_hparams_of_the_regularization_grid(tmp_path):
    """Each cell of the dropout x weight-decay grid is a session of the HParams dashboard, with
    its hyperparameters and final metrics."""
    grid = ["--set", "dropouts=0,0.5", "--set", "weight_decays=0,0.01", "--set", "l1=0",
            "--set", "l2=0", "--set", "compare_dropout=0", "--set", "patience=0"]  # fmt: skip
    code, _, _ = bench("run", "--suite", "regularization", "--quick", *grid, "--epochs", "2",
                       "--threads", "1", "-q", "--tensorboard", tmp_path / "tb",
                       "--out", tmp_path / "reg")  # fmt: skip
    assert code == 0
    results = json.loads((tmp_path / "reg" / "results.json").read_text())
    cells = set()
    for run in results["runs"]:
        content = events(tmp_path / "tb" / "reg" / run["id"]).PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"]
        ).session_start_info.hparams
        cell = run["config"]["cell"]
        assert start["dropout"].number_value == cell["dropout"]
        assert start["weight_decay"].number_value == cell["weight_decay"]
        assert start["model"].string_value == "mlp" and start["seed"].number_value == 0
        experiment = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/experiment"]
        ).experiment
        tags = {info.name.tag for info in experiment.metric_infos}
        assert {"hparams/test_accuracy", "hparams/val_loss"} <= tags
        (final,) = events(tmp_path / "tb" / "reg" / run["id"]).Scalars("hparams/test_accuracy")
        assert final.value == pytest.approx(run["metrics"]["test_accuracy"])
        cells.add((cell["dropout"], cell["weight_decay"]))
    assert cells == {(0.0, 0.0), (0.0, 0.01), (0.5, 0.0), (0.5, 0.01)}


def test_bench_time_writes_its_samples(tmp_path):
    code, _, _ = bench("time", "--model", "mlp", "--model-opt", "hidden=8", "--batch-size", "4",
                       "--mode", "forward", "--quick", "--threads", "1", "-q",
                       "--tensorboard", tmp_path / "tb", "--out", tmp_path / "t")  # fmt: skip
    assert code == 0
    (run,) = json.loads((tmp_path / "t" / "results.json").read_text())["runs"]
    board = events(tmp_path / "tb" / "t" / run["id"])
    samples = run["metrics"]["forward"]["samples"]
    assert [e.value for e in board.Scalars("time/forward ms")] == pytest.approx(
        [1e3 * s for s in samples], rel=1e-6
    )
    (median,) = board.Scalars("time/forward median ms")
    assert median.value == pytest.approx(1e3 * run["metrics"]["forward"]["median"], rel=1e-6)


def test_the_docs_sink_example_prints_each_run(tmp_path):
    from test_api import docs_python

    (code,) = docs_python("guides/tensorboard.md")
    plugin = tmp_path / "print_sink.py"
    plugin.write_text(code)
    result = CliRunner().invoke(
        cli,
        [
            "run",
            *TINY,
            "--plugin",
            str(plugin),
            "--sink",
            "print=done",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 0
    lines = [line for line in result.stdout.splitlines() if line.startswith("done ")]
    assert lines[0].startswith("done 000-mlp-digits-s0 ok 0.")
    assert lines[1].startswith("done 001-mlp-digits-s1 ok 0.")
    assert lines[2] == "done suite complete"
