"""Reliability: failures stay contained, nothing is lost, bad input is refused, runs repeat.

Deliberately broken models live in tests/data/broken_plugins.py; malformed suite files in
tests/data/bad_suites/. Everything trains tiny MLPs on 8x8 digits for one epoch or a few.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import harness.worker
from harness.cli import cli
from harness.plugins import load_plugins
from harness.procedure import RunContext
from harness.procedures.pruning import _checkpoint_path
from harness.rerun import comparable, differences
from harness.results import atomic_write, atomic_write_json, load_results
from harness.runner import RunPolicy, default_out_dir, run_suite
from harness.suites import Run, parse_suite

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
BROKEN = DATA / "broken_plugins.py"
UNIMPORTABLE = DATA / "import_error_plugin.py"
TINY = ["--dataset", "digits", "--dataset-opt", "size=8", "--epochs", "1", "--threads", "1"]
DIGITS8 = {"datasets": ["digits"], "dataset_options": {"digits": {"size": 8}}}
MLP16 = {"name": "mlp", "options": {"hidden": 16}}


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """``run_suite(threads=...)`` sets torch's thread count for the process; give it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def bench(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def broken_registry():
    return load_plugins([str(BROKEN)]).registry


def tiny_suite(registry, models):
    data = {"models": models, **DIGITS8, "train": {"epochs": 1}}
    return parse_suite(data, registry, source="test")


def run_tiny(suite, registry, out_dir, policy=None):
    """One thread: two busy threads on a small machine make tiny runs a hundred times slower."""
    return run_suite(suite, registry, out_dir=out_dir, quiet=True, threads=1, policy=policy)


# --- failures stay contained -------------------------------------------------------------------


def test_broken_plugins_are_recorded_and_the_suite_goes_on(tmp_path):
    models = ["raises-forward", "nan-output", "wrong-shape", "missing-import", "cuda-oom", "mlp"]
    result = bench(
        "--plugin", BROKEN, "--plugin", UNIMPORTABLE,
        "run", *(a for m in models for a in ("--model", m)), *TINY, "--out", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "import_error_plugin" in result.stderr and "failed to load" in result.stderr
    data = load_results(tmp_path)
    assert data["status"] == "complete"
    runs = {r["config"]["model"]: r for r in data["runs"]}
    statuses = [runs[m]["status"] for m in models]
    assert statuses == ["failed", "diverged", "failed", "failed", "oom", "ok"]
    assert "boom in forward" in runs["raises-forward"]["error"]
    assert "nan" in runs["nan-output"]["error"]
    shape_error = runs["wrong-shape"]["error"]
    assert "(3,)" in shape_error and "(10,)" in shape_error and "(1, 8, 8)" in shape_error
    assert "No module named 'bench_module_that_does_not_exist'" in runs["missing-import"]["error"]
    assert "CUDA out of memory" in runs["cuda-oom"]["error"]
    assert "5 of 6 run(s) did not succeed" in result.stderr
    for model in models[:5]:
        assert runs[model]["id"] in result.stderr


def test_geometry_mismatch_names_both_shapes_before_training(tmp_path):
    result = bench("run", "--model", "lenet5", "--dataset", "mnist1d", "--out", tmp_path)
    assert result.exit_code == 1
    (run,) = load_results(tmp_path)["runs"]
    assert run["status"] == "failed" and run["wall_time_s"] < 5
    assert "(1, 28, 28)" in run["error"] and "(1, 40)" in run["error"]


def test_run_timeout_stops_a_run_in_process(broken_registry, tmp_path):
    suite = tiny_suite(broken_registry, ["sleepy", MLP16])
    policy = RunPolicy(run_timeout=1.0)
    outcome = run_tiny(suite, broken_registry, tmp_path, policy)
    sleepy, mlp = outcome.store.runs
    assert sleepy["status"] == "timeout" and "--run-timeout 1 s" in sleepy["error"]
    assert sleepy["wall_time_s"] < 1.8
    assert mlp["status"] == "ok"
    assert outcome.store.data["execution"]["run_timeout"] == 1.0


def test_run_timeout_waits_for_an_import_to_finish(broken_registry, tmp_path):
    """An import cut short would leave a half-initialised module behind for every later run."""
    suite = tiny_suite(broken_registry, ["slow-import"])
    outcome = run_tiny(suite, broken_registry, tmp_path, RunPolicy(run_timeout=0.3))
    (run,) = outcome.store.runs
    assert run["status"] == "timeout" and run["wall_time_s"] >= 1.0


def test_isolate_survives_segfault_exit_and_a_stuck_worker(broken_registry, tmp_path, monkeypatch):
    monkeypatch.setattr(harness.worker, "KILL_GRACE", 0.5)
    suite = tiny_suite(broken_registry, ["segfault", "exits", "hangs", MLP16])
    policy = RunPolicy(isolate=True, run_timeout=3.0, plugins=(str(BROKEN),))
    outcome = run_tiny(suite, broken_registry, tmp_path, policy)
    segfault, exits, hangs, mlp = load_results(tmp_path)["runs"]
    assert segfault["status"] == "failed" and "SIGSEGV" in segfault["error"]
    assert "Fatal Python error: Segmentation fault" in segfault["traceback"]
    assert exits["status"] == "failed" and "exited with code 3" in exits["error"]
    assert hangs["status"] == "timeout" and "worker killed" in hangs["error"]
    assert mlp["status"] == "ok" and mlp["metrics"]["params"] == 64 * 16 + 16 + 16 * 10 + 10
    assert outcome.store.data["status"] == "complete"


def test_isolated_pruning_shares_its_checkpoint_and_reruns_exactly(registry, tmp_path):
    """Workers hand the dense checkpoint on through the output directory; the numbers are the
    same as in-process, and ``bench rerun`` of the pruned run reproduces them."""
    data = {
        "procedure": "pruning",
        "models": [MLP16],
        **DIGITS8,
        "train": {"epochs": 1},
        "pruning": {"methods": ["layer-magnitude"], "targets": [50], "latency_batch": 8},
    }
    suite = parse_suite(data, registry, source="test")
    isolated = run_tiny(suite, registry, tmp_path / "iso", RunPolicy(isolate=True))
    inline = run_tiny(suite, registry, tmp_path / "inline")
    assert [r["status"] for r in isolated.store.runs] == ["ok", "ok"]
    for a, b in zip(isolated.store.runs, inline.store.runs, strict=True):
        assert differences(comparable(a["metrics"]), comparable(b["metrics"])) == []
    pruned = isolated.store.runs[1]["id"]
    result = bench("rerun", tmp_path / "iso", pruned, "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert "reproduced" in result.output and "accuracy_after" in result.output
    assert (tmp_path / "again" / "checkpoints").is_dir()


def test_fail_fast_stops_at_the_first_failure(tmp_path):
    models = ["--model", "raises-forward", "--model", "mlp"]
    result = bench("--plugin", BROKEN, "run", *models, *TINY, "--fail-fast", "--out", tmp_path)
    assert result.exit_code == 1
    data = load_results(tmp_path)
    assert data["status"] == "stopped" and [r["status"] for r in data["runs"]] == ["failed"]
    assert "--fail-fast" in data["note"] and "1 of 2 runs not started" in data["note"]
    assert "stopped by --fail-fast" in result.stderr


def test_policy_flags_reach_bench_time(tmp_path):
    for command in ("time", "profile"):
        help_text = bench(command, "--help").output
        for flag in ("--run-timeout", "--fail-fast", "--isolate", "--deterministic"):
            assert flag in help_text
    result = bench(
        "time", "--model", "mlp", "--batch-size", "1", "--mode", "forward", "--quick",
        "--run-timeout", "60", "--out", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_results(tmp_path)["execution"]["run_timeout"] == 60.0


# --- nothing is lost: interrupts and --resume ----------------------------------------------------


def suite(seeds: int = 8, epochs: int = 20) -> list[str]:
    """Eight runs of about 0.2 s each, enough to interrupt one in the middle."""
    seed_args = [a for seed in range(seeds) for a in ("--seed", str(seed))]
    model = ["--model", "mlp", "--model-opt", "hidden=16", "--dataset", "digits"]
    options = ["--dataset-opt", "size=8", "--epochs", str(epochs), "--threads", "1", "--quiet"]
    return ["run", *model, *options, *seed_args]


SUITE = suite()


def bench_process(*args) -> subprocess.Popen:
    command = [sys.executable, "-c", "from harness.cli import main; main()", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """The suite run once, uninterrupted, in this process."""
    out = tmp_path_factory.mktemp("clean") / "out"
    threads = torch.get_num_threads()
    result = bench(*SUITE, "--out", out)
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out


def wait_for_runs(path: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if path.is_file() and len(json.loads(path.read_text())["runs"]) >= count:
            return
        time.sleep(0.02)
    pytest.fail(f"the suite did not reach {count} runs while running")


def report_without_timings(out: Path) -> list[str]:
    """The report's table rows, without the context line and the train-seconds column."""
    rows = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("|")]
    return [line.rsplit("|", 3)[0] + line.rsplit("|", 2)[-1] for line in rows]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_suite_resumes_to_the_clean_result(tmp_path, clean_run, signum, code):
    out = tmp_path / "out"
    process = bench_process(*SUITE, "--out", out)
    wait_for_runs(out / "results.json", 2, process)
    process.send_signal(signum)
    returncode, stderr = finish(process)
    assert returncode == code, stderr
    data = load_results(out)
    assert data["status"] == "interrupted" and signal.Signals(signum).name in data["note"]
    assert 2 <= len(data["runs"]) < 8
    assert f"--resume {out}" in stderr

    refused = bench(*suite(epochs=3), "--resume", out)  # not the same suite
    assert refused.exit_code == 2 and "not in this suite's plan" in refused.output

    result = bench(*SUITE, "--resume", out)  # here: three processes make the final results
    assert result.exit_code == 0, result.output
    resumed, clean = load_results(out), load_results(clean_run)
    assert resumed["status"] == "complete" and len(resumed["resumed"]) == 1
    assert [(r["id"], r["hash"], r["status"]) for r in resumed["runs"]] == [
        (r["id"], r["hash"], r["status"]) for r in clean["runs"]
    ]
    for mine, theirs in zip(resumed["runs"], clean["runs"], strict=True):
        assert differences(comparable(mine["metrics"]), comparable(theirs["metrics"])) == []
    assert report_without_timings(out) == report_without_timings(clean_run)


def test_same_seed_gives_the_same_numbers_in_another_process(tmp_path, clean_run):
    returncode, stderr = finish(bench_process(*suite(seeds=2), "--out", tmp_path))
    assert returncode == 0, stderr
    again = load_results(tmp_path)["runs"]
    first = load_results(clean_run)["runs"][:2]
    for a, b in zip(again, first, strict=True):
        assert a["hash"] == b["hash"]
        for key in ("test_accuracy", "test_loss", "val_loss", "train_loss"):
            assert abs(a["metrics"][key] - b["metrics"][key]) <= 1e-6
        losses = [(h["train_loss"], h["val_loss"]) for h in a["metrics"]["history"]]
        assert losses == [(h["train_loss"], h["val_loss"]) for h in b["metrics"]["history"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [('{"tool": "bench", "runs": [{"id": "0', "not valid JSON"), ('{"x": 1}', "not a bench")],
)
def test_resume_refuses_truncated_or_foreign_files_and_leaves_them(tmp_path, text, message):
    (tmp_path / "results.json").write_text(text)
    result = bench("run", "--model", "mlp", *TINY, "--resume", tmp_path)
    assert result.exit_code == 2 and message in result.output
    assert (tmp_path / "results.json").read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_results_writes_are_fsynced_and_hold_signals_back(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    path = tmp_path / "r.json"

    def write(handle):
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the write
        handle.write(b'{"a": 1}')

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, write)
    assert json.loads(path.read_text()) == {"a": 1}  # written whole, then interrupted
    assert len(synced) == 2  # the file and its directory


# --- reproducibility: --deterministic and bench rerun --------------------------------------------


def test_deterministic_flag_is_recorded_restored_and_changes_nothing_on_cpu(tmp_path):
    common = ["run", "--model", "mlp", "--model-opt", "hidden=16", *TINY, "--quiet"]
    assert bench(*common, "--out", tmp_path / "plain").exit_code == 0
    assert bench(*common, "--deterministic", "--out", tmp_path / "det").exit_code == 0
    assert not torch.are_deterministic_algorithms_enabled()
    plain, det = load_results(tmp_path / "plain"), load_results(tmp_path / "det")
    assert det["execution"]["deterministic"] and not plain["execution"]["deterministic"]
    assert comparable(plain["runs"][0]["metrics"]) == comparable(det["runs"][0]["metrics"])

    result = bench("rerun", tmp_path / "det", "0", "--out", tmp_path / "again")
    assert result.exit_code == 0 and "reproduced" in result.output
    rerun = load_results(tmp_path / "again")
    assert rerun["execution"]["deterministic"] and rerun["rerun_of"]["run"] == "000-mlp-digits-s0"

    tampered = json.loads((tmp_path / "det" / "results.json").read_text())
    tampered["runs"][0]["metrics"]["test_accuracy"] += 0.01
    atomic_write_json(tmp_path / "det" / "results.json", tampered)
    result = bench("rerun", tmp_path / "det", "000-mlp-digits-s0", "--out", tmp_path / "third")
    assert result.exit_code == 1 and "NOT reproduced" in result.output
    assert "test_accuracy" in result.output

    unknown = bench("rerun", tmp_path / "det", "000-mlp-digit-s0")
    assert unknown.exit_code == 2 and "Did you mean '000-mlp-digits-s0'" in unknown.output


# --- bad input gets a clear error ----------------------------------------------------------------

BAD_SUITES = sorted((DATA / "bad_suites").glob("*.toml"))


def expectations(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))


@pytest.mark.parametrize("path", BAD_SUITES, ids=[p.stem for p in BAD_SUITES])
def test_malformed_suite_files_name_file_and_key_with_exit_2(path):
    expected = expectations(path)
    result = bench("run", "--suite", path)
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and expected["message"] in result.output
    if "key" in expected:
        assert f"key '{expected['key']}'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "epochs=0: must be >= 1"),
        (["--batch-size", "0"], "batch_size=0: must be >= 1"),
        (["--lr", "0"], "lr=0.0: must be >="),
        (["--lr", "nan"], "expected a finite number"),
        (["--weight-decay", "-0.5"], "weight_decay=-0.5: must be >= 0"),
        (["--momentum", "1"], "momentum=1.0: must be < 1"),
        (["--model-opt", "dropout=1"], "dropout='1': must be < 1"),
        (["--model-opt", "dropout=-0.1"], "must be >= 0"),
        (["--model-opt", "hiden=3"], "Did you mean 'hidden'"),
        (["--dataset-opt", "sise=8"], "Did you mean 'size'"),
        (["--suite", "cnn-pruning", "--set", "targets=100"], "must be < 100"),
        (["--suite", "cnn-pruning", "--set", "targets=-1"], "must be >= 0"),
        (["--suite", "cnn-pruning", "--set", "targetz=50"], "Did you mean 'targets'"),
        (["--suite", "cnn-pruning", "--set", "methods=magnitud"], "Did you mean"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_out_of_range_and_unknown_options_are_refused(args, message):
    base = [] if "--suite" in args else ["--model", "mlp", "--dataset", "digits"]
    result = bench("run", *base, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only errors")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["time", "--model", "mlp", "--amp", "fp16"], "fp16 autocast is not supported on CPU"),
        (["time", "--model", "mlp", "--device", "cuda"], "CUDA is not available"),
        (["profile", "--model", "mlp", "--device", "cuda:1"], "CUDA is not available"),
        (["run", "--model", "mlp", "--dataset", "digits", "--device", "cuda"], "CUDA is not"),
    ],
)
def test_devices_and_amp_that_do_not_exist_here_are_errors(args, message):
    result = bench(*args)
    assert result.exit_code == 2 and message in result.output


# --- security ------------------------------------------------------------------------------------


def test_every_torch_load_is_weights_only():
    calls = []
    for path in [*REPO.glob("harness/**/*.py"), *REPO.glob("plugins/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                calls.append((path.name, keywords.get("weights_only")))
    assert calls and all(value == "True" for _, value in calls), calls


def test_names_from_suites_cannot_escape_the_output_directory(registry, tmp_path):
    config = {"model_label": "../../../x", "dataset_label": "/etc", "seed": 0}
    ctx = RunContext(registry=registry, device=torch.device("cpu"), out_dir=tmp_path)
    assert _checkpoint_path(config, ctx).parent == tmp_path / "checkpoints"
    assert default_out_dir("../../../x", tmp_path).parent == tmp_path
    run = Run(0, "throughput", {"name": "mlp-path=../../../etc/passwd"})
    assert (tmp_path / "traces" / run.name).parent == tmp_path / "traces"
