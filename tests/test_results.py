"""The results file: schema, atomic writes, refusal of foreign or truncated files, failures kept."""

import json
import sys

import pytest
import torch

from harness.errors import BenchError
from harness.execution.runner import run_suite
from harness.planning.suite_files import parse_suite
from harness.registry.specs import ModelSpec
from harness.results.store import ResultsStore, atomic_write_json, load_results


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2, "t": (1, 2)})
    assert json.loads(path.read_text()) == {"a": 2, "t": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_store_writes_each_save_as_indented_json_of_the_whole_document(tmp_path):
    """Saving encodes each run's record once and reuses it; the file must still be exactly
    ``json.dumps(data, indent=2)``, after records are added, replaced and the run finished."""
    path = tmp_path / "results.json"
    store = ResultsStore.create(path, command=["bench"], suite={"name": "s"}, environment={})

    def written() -> str:
        return json.dumps(store.data, indent=2) + "\n"

    assert path.read_text() == written()
    for index in (2, 0, 1):
        record = {"index": index, "hash": f"h{index}", "status": "ok", "metrics": {"m": [[1, 2]]}}
        store.add(record)
        assert path.read_text() == written()
    store.add({"index": 0, "hash": "h0", "status": "failed", "history": [], "note": "a\nb"})
    store.finish("complete", "done")
    assert path.read_text() == written()
    assert [r["index"] for r in json.loads(path.read_text())["runs"]] == [0, 1, 2]


def test_store_refuses_to_overwrite(tmp_path):
    ResultsStore.create(tmp_path / "results.json", command=[], suite={}, environment={})
    with pytest.raises(BenchError, match="already exists"):
        ResultsStore.create(tmp_path / "results.json", command=[], suite={}, environment={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"tool": "bench", "runs": [', "not valid JSON"),
        ('{"hello": 1}', "not a bench results file"),
        ('{"tool": "bench", "runs": [], "schema_version": 99}', "schema version 99"),
    ],
)
def test_load_refuses_truncated_or_foreign(tmp_path, text, message):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(BenchError, match=message):
        load_results(path)


class Broken(torch.nn.Module):
    def __init__(self, *args):
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x):
        if self.training:
            raise RuntimeError("boom in forward")
        return self.linear(x.flatten(1))


def test_failing_run_is_recorded_and_suite_goes_on(registry, tmp_path):
    registry.models.add(ModelSpec("broken-forward", "raises", Broken), "test")
    try:
        suite = parse_suite(
            {
                "models": ["broken-forward", "mlp"],
                "datasets": ["digits"],
                "dataset_options": {"digits": {"size": 8}},
                "train": {"epochs": 1},
            },
            registry,
            source="t",
        )
        outcome = run_suite(
            suite, registry, out_dir=tmp_path, device="cpu", quiet=True, command=["bench", "test"]
        )
    finally:
        registry.models._items.pop("broken-forward")
    data = load_results(tmp_path / "results.json")
    assert data["status"] == "complete"
    assert [r["status"] for r in data["runs"]] == ["failed", "ok"]
    assert "boom in forward" in data["runs"][0]["error"]
    assert "Broken" in data["runs"][0]["traceback"] or "boom" in data["runs"][0]["traceback"]
    assert len(outcome.failures) == 1
    assert "did not finish" in (tmp_path / "report.md").read_text()


def test_results_schema(registry, tmp_path):
    suite = parse_suite(
        {"models": ["mlp"], "dataset_options": {"digits": {"size": 8}}, "train": {"epochs": 1}},
        registry,
        source="t",
    )
    run_suite(suite, registry, out_dir=tmp_path, device="cpu", quiet=True, command=["bench"])
    data = load_results(tmp_path)
    assert data["schema_version"] == 1 and data["status"] == "complete"
    env = data["environment"]
    for key in ("torch", "device", "device_name", "cpu", "threads", "python", "git_commit"):
        assert key in env
    run = data["runs"][0]
    assert set(run) >= {"id", "hash", "config", "status", "metrics", "wall_time_s"}
    metrics = run["metrics"]
    for key in ("test_accuracy", "val_accuracy", "params", "flops", "history", "train_seconds"):
        assert key in metrics
    assert 0 <= metrics["test_accuracy"] <= 1
    assert run["config"]["train"]["epochs"] == 1


def test_interrupt_keeps_completed_runs(registry, tmp_path, monkeypatch):
    import harness.execution.jobs as jobs

    real = jobs.execute_run
    calls = []

    def interrupting(procedure, run, ctx, **options):
        calls.append(run.id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(procedure, run, ctx, **options)

    monkeypatch.setattr(jobs, "execute_run", interrupting)
    suite = parse_suite(
        {
            "models": ["mlp"],
            "seeds": [0, 1, 2],
            "train": {"epochs": 1},
            "dataset_options": {"digits": {"size": 8}},
            "stack": "off",  # one run after another: the second is interrupted
        },
        registry,
        source="t",
    )
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, registry, out_dir=tmp_path, device="cpu", quiet=True, command=[])
    data = load_results(tmp_path)
    assert data["status"] == "interrupted" and len(data["runs"]) == 1
    assert "1 of 3" in data["note"]


def test_progress_bar_shows_each_epoch_of_the_running_run(registry, tmp_path, capsys, monkeypatch):
    suite = parse_suite(
        {"models": ["mlp"], "dataset_options": {"digits": {"size": 8}}, "train": {"epochs": 3}},
        registry,
        source="t",
    )
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: the bar is shown
    run_suite(suite, registry, out_dir=tmp_path, device="cpu", quiet=False, command=["bench"])
    shown = capsys.readouterr().err
    history = load_results(tmp_path)["runs"][0]["metrics"]["history"]
    for record in history:
        assert f"mlp-digits-s0: epoch {record['epoch']}, val acc {record['val_accuracy']:.1%}" in (
            shown
        )
