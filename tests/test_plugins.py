"""The plugin system: discovery, loading, failures, duplicates, and one test per hook.

Every hook in :mod:`harness.registry.hookspecs` has a ``test_hook_<name>`` here (enforced by
``test_every_hook_has_a_test``) and an entry in the docs, as datasette does.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_sinks import RECORDER

from harness.cli import cli
from harness.data import DataContext, TensorSplit
from harness.errors import BenchError, DuplicateNameError
from harness.execution.runner import RunPolicy, run_suite
from harness.planning.overrides import Overrides, load_suite_with
from harness.planning.suite_files import find_suite, parse_suite
from harness.registry import hookspecs
from harness.registry.loading import (
    ENV_VAR,
    HOOKS,
    PluginInfo,
    Plugins,
    extra_plugin_names,
    load_plugins,
)

REPO = Path(__file__).resolve().parents[1]
# entry-point name -> the package registered under it (each a built-in beside its registration)
BUILT_INS = {
    "tasks": "bench_plugins.tasks",
    "models": "bench_plugins.models",
    "datasets": "bench_plugins.datasets",
    "suites": "bench_plugins.suites",
    "pruning": "bench_plugins.procedures.pruning",
    "executors": "bench_plugins.executors",
    "sinks": "bench_plugins.sinks",
}
HOOK_NAMES = sorted(name for name, f in vars(hookspecs).items() if hasattr(f, "bench_spec"))

MODEL_PLUGIN = """
import math

from torch import nn

from harness import hookimpl
from harness.registry.specs import ModelSpec


def build(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


@hookimpl
def register_models(register):
    for name in {names!r}:
        register(ModelSpec(name, "a linear test model", build))
"""

DATASET_PLUGIN = """
import torch

from harness import hookimpl
from harness.data import Splits, TensorSplit
from harness.options import Option
from harness.registry.specs import DatasetSpec


def load(options, context):
    generator = torch.Generator().manual_seed(context.seed)
    split = lambda n: TensorSplit(torch.randn(n, 4, generator=generator), torch.arange(n) % 2)
    return Splits(split(options["samples"]), split(4), split(6), input_shape=(4,), num_classes=2)


@hookimpl
def register_datasets(register):
    register(DatasetSpec("noise", "random vectors", load, input_shape=(4,), num_classes=2,
                         options={"samples": Option(8, "training samples")}))
"""

SUITE_PLUGIN = """
from pathlib import Path

from harness import hookimpl
from harness.planning.suite_files import suite_from_file


@hookimpl
def register_suites(register):
    register(suite_from_file(Path(__file__).with_name("plugin_suite.toml")))
"""

SUITE_FILE = """
name = "plugin-suite"
description = "a suite shipped by a plugin"
models = ["mlp"]
datasets = ["digits"]
"""

PROCEDURE_PLUGIN = """
from harness import hookimpl
from harness.planning.protocol import Procedure, Report
from harness.planning.suite_files import Run


def plan(suite, registry):
    return [Run(0, "echo", {"name": "only", "models": [m.name for m in suite.models]})]


def execute(run, ctx):
    return {"answer": 42, "models": run.config["models"]}


def report(results, plots_dir):
    return Report(f"echo report of {len(results['runs'])} run(s)")


@hookimpl
def register_procedures(register):
    register(Procedure("echo", "returns 42", plan, execute, report))
"""

PRUNING_PLUGIN = """
from dataclasses import dataclass

from harness import hookimpl


@dataclass(frozen=True)
class Halve:
    name: str = "halve"

    def prune(self, model, target, context):
        return model


@hookimpl
def register_pruning_methods(register):
    register(Halve())
"""

TASK_PLUGIN = """
import torch
import torch.nn.functional as F
from torch import nn

from harness import hookimpl
from harness.data import Splits, TensorSplit
from harness.registry.specs import DatasetSpec, ModelSpec
from harness.tasks import LOWER, Metric, Task


class AbsoluteError:
    def __init__(self, info, train):
        self.total, self.count = 0.0, 0

    def update(self, outputs, targets, loss=None):
        self.total += (outputs.detach() - targets).abs().sum().item()
        self.count += targets.numel()

    def compute(self):
        mae = self.total / max(self.count, 1)
        return {"loss": mae, "mae": mae}


def check(outputs, targets, info):
    return None if outputs.shape == targets.shape else f"returns {tuple(outputs.shape[1:])}"


def load(options, context):
    generator = torch.Generator().manual_seed(context.seed)

    def split(n):
        x = torch.rand(n, 1, generator=generator)
        return TensorSplit(x, 2 * x + 1)

    return Splits(split(64), split(16), split(16), input_shape=(1,), num_classes=1,
                  task="absolute-error")


@hookimpl
def register_tasks(register):
    register(Task("absolute-error", "L1 regression", F.l1_loss, AbsoluteError, check,
                  metrics=(Metric("mae", LOWER, "target"),), headline="mae",
                  epoch_metrics=("mae",)))


@hookimpl
def register_datasets(register):
    register(DatasetSpec("line", "y = 2x + 1", load, input_shape=(1,), num_classes=1,
                         task="absolute-error"))


@hookimpl
def register_models(register):
    register(ModelSpec("affine", "one weight, one bias", lambda shape, n: nn.Linear(1, 1),
                       input_shape=(1,), num_classes=1, tasks=("absolute-error",)))
"""

TASK_SUITE = """
name = "line-fit"
models = ["affine"]
datasets = ["line"]
[train]
epochs = 60
batch_size = 16
optimizer = "adam"
lr = 0.05
"""

BROKEN_IMPORT = "import bench_test_module_that_is_not_installed\n"

RAISING_HOOK = """
from harness import hookimpl


@hookimpl
def register_models(register):
    raise RuntimeError("cannot build models today")
"""

WritePlugin = Callable[[str, str], Path]


@pytest.fixture(autouse=True)
def no_env_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def write_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WritePlugin]:
    """Write ``<name>.py`` into a directory on sys.path; forget the imported modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(name: str, source: str) -> Path:
        names.append(name)
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    yield write
    for name in names:
        sys.modules.pop(name, None)
        sys.modules.pop(f"bench_plugin_{name}", None)


def model_plugin(*names: str) -> str:
    return MODEL_PLUGIN.format(names=list(names))


def info(plugins: Plugins, source: str | Path) -> PluginInfo:
    """The one plugin loaded from ``source`` (a path, a module name or "entry point ...")."""
    (found,) = [p for p in plugins.plugins if p.source == str(source)]
    return found


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


# Discovery and loading


def test_built_in_plugins_load_through_entry_points():
    plugins = load_plugins()
    for name, module in BUILT_INS.items():
        built_in = info(plugins, f"entry point {module} (bench-harness)")
        assert (built_in.name, built_in.status, built_in.error) == (name, "loaded", None)
    assert plugins.registry.models.source("mlp").startswith("plugin 'models' (entry point")


def test_third_party_entry_point_is_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An installed distribution: a module plus a dist-info with an entry in the bench group."""
    (tmp_path / "thirdparty_models.py").write_text(textwrap.dedent(model_plugin("thirdparty")))
    dist_info = tmp_path / "bench_thirdparty-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: bench-thirdparty\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text("[bench]\nthirdparty = thirdparty_models\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "thirdparty_models", raising=False)

    plugins = load_plugins()

    source = "entry point thirdparty_models (bench-thirdparty)"
    assert (info(plugins, source).name, info(plugins, source).status) == ("thirdparty", "loaded")
    assert plugins.registry.models.source("thirdparty") == f"plugin 'thirdparty' ({source})"
    assert "mlp" in plugins.registry.models


def test_plugin_from_a_file(write_plugin: WritePlugin):
    path = write_plugin("file_plugin", model_plugin("from-file"))
    plugins = load_plugins([str(path)])
    assert info(plugins, path).name == "file_plugin"
    assert info(plugins, path).provides == ["model from-file"]
    assert str(path) in plugins.registry.models.source("from-file")


def test_plugin_from_a_module_name(write_plugin: WritePlugin):
    write_plugin("module_plugin", model_plugin("from-module"))
    plugins = load_plugins(["module_plugin"])
    assert info(plugins, "module_plugin").name == "module_plugin"
    assert "from-module" in plugins.registry.models


def test_file_plugin_may_share_a_built_in_plugins_name(write_plugin: WritePlugin):
    """A user's ``models.py`` loads beside the built-in ``models`` plugin; each keeps its models."""
    path = write_plugin("models", model_plugin("users-model"))
    plugins = load_plugins([str(path)])
    assert (info(plugins, path).status, info(plugins, path).provides) == (
        "loaded",
        ["model users-model"],
    )
    built_in = info(plugins, "entry point bench_plugins.models (bench-harness)")
    assert built_in.status == "loaded" and "model mlp" in built_in.provides
    assert "bench_plugins.models " in plugins.registry.models.source("mlp")


def test_plugin_named_twice_loads_once(write_plugin: WritePlugin, monkeypatch):
    path = str(write_plugin("twice", model_plugin("once")))
    monkeypatch.setenv(ENV_VAR, path)
    plugins = load_plugins(extra_plugin_names([path]))
    assert info(plugins, path).status == "loaded"  # exactly one, and not a name clash


def test_env_var_names_plugins(write_plugin: WritePlugin, monkeypatch: pytest.MonkeyPatch):
    first = write_plugin("env_first", model_plugin("env-a"))
    write_plugin("env_second", model_plugin("env-b"))
    monkeypatch.setenv(ENV_VAR, f"{first}, env_second")
    assert extra_plugin_names(["cli.py"]) == ["cli.py", str(first), "env_second"]
    registry = load_plugins(extra_plugin_names()).registry
    assert {"env-a", "env-b"} <= set(registry.models.names())


def test_env_var_accepts_the_path_separator():
    environ = {ENV_VAR: f"a.py{os.pathsep}b"}
    assert extra_plugin_names(environ=environ) == ["a.py", "b"]


def test_plugin_that_fails_to_import_is_reported_and_others_load(write_plugin: WritePlugin):
    broken = write_plugin("broken", BROKEN_IMPORT)
    good = write_plugin("good", model_plugin("still-here"))
    plugins = load_plugins([str(broken), str(good)])
    failure = info(plugins, broken)
    assert (failure.name, failure.status) == ("broken", "failed")
    assert "ModuleNotFoundError" in failure.error
    assert "bench_test_module_that_is_not_installed" in failure.error
    assert info(plugins, good).status == "loaded"
    assert {"still-here", "mlp", "digits"} <= {
        *plugins.registry.models.names(),
        *plugins.registry.datasets.names(),
    }


def test_missing_plugin_file_is_reported(tmp_path: Path):
    missing = tmp_path / "nowhere.py"
    failure = info(load_plugins([str(missing)]), missing)
    assert (failure.name, failure.status) == ("nowhere", "failed")
    assert f"no plugin file at {missing}" in failure.error


def test_plugin_whose_hook_raises_is_reported_and_others_load(write_plugin: WritePlugin):
    raising = write_plugin("raising", RAISING_HOOK)
    plugins = load_plugins([str(raising)])
    failure = info(plugins, raising)
    assert (failure.name, failure.status) == ("raising", "failed")
    assert failure.error.startswith("register_models: RuntimeError: cannot build models today")
    assert "mlp" in plugins.registry.models


def test_duplicate_name_between_plugins_names_both_sources(write_plugin: WritePlugin):
    first = write_plugin("twin_a", model_plugin("twin"))
    second = write_plugin("twin_b", model_plugin("twin"))
    with pytest.raises(DuplicateNameError) as raised:
        load_plugins([str(first), str(second)])
    message = str(raised.value)
    assert "model 'twin' is registered twice" in message
    assert f"plugin 'twin_a' ({first})" in message and f"plugin 'twin_b' ({second})" in message


def test_duplicate_of_a_built_in_name_names_the_built_in(write_plugin: WritePlugin):
    path = write_plugin("shadow", model_plugin("mlp"))
    with pytest.raises(DuplicateNameError, match="entry point bench_plugins.models ") as raised:
        load_plugins([str(path)])
    assert str(path) in str(raised.value)


# One test per hook


def test_hook_register_models(write_plugin: WritePlugin):
    path = write_plugin("hook_models", model_plugin("lin-a", "lin-b"))
    plugins = load_plugins([str(path)])
    assert info(plugins, path).provides == ["model lin-a", "model lin-b"]
    model = plugins.registry.models.get("lin-b").create((1, 8, 8), 3)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


def test_hook_register_datasets(write_plugin: WritePlugin):
    path = write_plugin("hook_datasets", DATASET_PLUGIN)
    plugins = load_plugins([str(path)])
    assert info(plugins, path).provides == ["dataset noise"]
    splits = plugins.registry.datasets.get("noise").open({"samples": "10"}, DataContext(seed=3))
    assert isinstance(splits.train, TensorSplit)
    assert splits.sizes() == {"train": 10, "val": 4, "test": 6}


def test_hook_register_suites(write_plugin: WritePlugin):
    path = write_plugin("hook_suites", SUITE_PLUGIN)
    path.with_name("plugin_suite.toml").write_text(SUITE_FILE)
    registry = load_plugins([str(path)]).registry
    assert find_suite("plugin-suite", registry) == path.with_name("plugin_suite.toml")
    suite = load_suite_with("plugin-suite", registry, Overrides())
    assert ([m.name for m in suite.models], [d.name for d in suite.datasets]) == (
        ["mlp"],
        ["digits"],
    )


def test_hook_register_procedures(write_plugin: WritePlugin, tmp_path: Path):
    registry = load_plugins([str(write_plugin("hook_procedures", PROCEDURE_PLUGIN))]).registry
    suite = parse_suite(
        {"procedure": "echo", "models": ["mlp"], "datasets": ["digits"]}, registry, source="test"
    )
    outcome = run_suite(suite, registry, out_dir=tmp_path / "out", device="cpu", quiet=True)
    (run,) = outcome.store.runs
    assert (run["status"], run["metrics"]) == ("ok", {"answer": 42, "models": ["mlp"]})
    assert outcome.report.markdown == "echo report of 1 run(s)"


def test_hook_register_pruning_methods(write_plugin: WritePlugin):
    path = write_plugin("hook_pruning", PRUNING_PLUGIN)
    plugins = load_plugins([str(path)])
    assert info(plugins, path).provides == ["pruning method halve"]
    assert plugins.registry.pruning_methods.get("halve").name == "halve"


def test_hook_register_executors(tmp_path: Path):
    """An executor from a plugin file runs a suite; its runs say where they ran."""
    path = REPO / "tests" / "data" / "worker_faults.py"
    plugins = load_plugins([str(path)])
    assert "executor one-thread" in info(plugins, path).provides
    registry = plugins.registry
    assert registry.executors.get("one-thread").description.startswith("jobs on one")
    suite = parse_suite(
        {"models": ["mlp"], "dataset_options": {"digits": {"size": 8}}, "train": {"epochs": 1}},
        registry,
        source="t",
    )
    policy = RunPolicy(executor="one-thread", plugins=(str(path),))
    outcome = run_suite(suite, registry, out_dir=tmp_path, quiet=True, policy=policy)
    (run,) = outcome.store.runs
    assert run["status"] == "ok" and run["placement"]["worker"] == "test thread"
    assert outcome.store.data["execution"]["executor"]["name"] == "one-thread"


def test_hook_register_result_sinks(tmp_path: Path):
    """A sink from a plugin file is told of each run of a suite as it is recorded, then of the
    end (the command-line side is in test_sinks.py)."""
    path = tmp_path / "sinks_plugin.py"
    path.write_text(RECORDER)
    plugins = load_plugins([str(path)])
    assert info(plugins, path).provides == ["result sink recorder", "result sink broken"]
    registry = plugins.registry
    suite = parse_suite(
        {"models": ["mlp"], "dataset_options": {"digits": {"size": 8}}, "train": {"epochs": 1}},
        registry,
        source="t",
    )
    log = tmp_path / "log.jsonl"
    run_suite(suite, registry, out_dir=tmp_path / "out", quiet=True, sinks=[f"recorder={log}"])
    first, last = (json.loads(line) for line in log.read_text().splitlines())
    assert first["run"] == "000-mlp-digits-s0" and first["on_disk"]
    assert last == {"closed": "complete", "runs": 1}


def test_hook_register_tasks(write_plugin: WritePlugin, tmp_path: Path):
    """A task, dataset and model from one plugin, run from a suite file like any other."""
    path = write_plugin("hook_tasks", TASK_PLUGIN)
    plugins = load_plugins([str(path)])
    assert info(plugins, path).provides == ["task absolute-error", "model affine", "dataset line"]
    suite_file = tmp_path / "line.toml"
    suite_file.write_text(TASK_SUITE)
    registry = plugins.registry
    suite = load_suite_with(str(suite_file), registry, Overrides())
    outcome = run_suite(suite, registry, out_dir=tmp_path / "out", device="cpu", quiet=True)
    (run,) = outcome.store.runs
    assert run["status"] == "ok", run["error"]
    metrics = run["metrics"]
    assert metrics["task"]["metrics"]["mae"]["direction"] == "lower"
    assert metrics["test_mae"] < metrics["history"][0]["val_mae"] / 3  # it learnt the line
    assert "test mae" in outcome.report.markdown
    mismatched = parse_suite({"models": ["lenet5"], "datasets": ["line"]}, registry, source="t")
    with pytest.raises(BenchError) as refused:  # before any run, naming what would fit
        run_suite(mismatched, registry, out_dir=tmp_path / "cnn", device="cpu", quiet=True)
    assert str(refused.value) == (
        "model 'lenet5' supports classification; dataset 'line' is for the absolute-error task "
        "(models for it: affine; datasets for lenet5: "
        + ", ".join(d.name for d in registry.datasets if d.task == "classification")
        + ")"
    )
    assert not (tmp_path / "cnn").exists()


def test_every_hook_has_a_test():
    assert HOOK_NAMES, "no hookspecs found"
    missing = [name for name in HOOK_NAMES if f"test_hook_{name}" not in globals()]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def test_every_hook_is_collected_into_the_registry():
    assert sorted(HOOKS) == HOOK_NAMES


def test_every_hook_is_documented():
    """Its docstring is its reference entry; the reference page and the plugin guide name it."""
    reference = (REPO / "docs" / "reference" / "hooks.md").read_text(encoding="utf-8")
    guide = (REPO / "docs" / "plugins" / "index.md").read_text(encoding="utf-8")
    for name in HOOK_NAMES:
        assert getattr(hookspecs, name).__doc__, f"hookspec {name} has no docstring"
        assert name in reference and name in guide, f"hook {name} is missing from the docs"


# Through the command line


@pytest.mark.parametrize("position", ["group", "command"])
def test_cli_plugin_option_adds_a_model(write_plugin: WritePlugin, position: str):
    path = str(write_plugin("cli_plugin", model_plugin("cli-model")))
    plugin = ["--plugin", path]
    args = [*plugin, "list", "models"] if position == "group" else ["list", "models", *plugin]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "| cli-model " in result.stdout


def test_cli_env_var_adds_a_model(write_plugin: WritePlugin):
    path = str(write_plugin("cli_env_plugin", model_plugin("env-model")))
    result = invoke("list", "models", "--json", env={ENV_VAR: path})
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["env-model"]["source"] == f"plugin 'cli_env_plugin' ({path})"


def test_cli_list_plugins_shows_a_failed_plugin(write_plugin: WritePlugin):
    path = str(write_plugin("cli_broken", BROKEN_IMPORT))
    result = invoke("--plugin", path, "list", "plugins", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["cli_broken"]["status"] == "failed"
    assert "bench_test_module_that_is_not_installed" in rows["cli_broken"]["error"]
    assert rows["models"]["status"] == "loaded"
    assert f"warning: plugin 'cli_broken' ({path}) failed to load" in result.stderr


def test_cli_duplicate_name_exits_2_naming_both_sources(write_plugin: WritePlugin):
    first = str(write_plugin("cli_twin_a", model_plugin("cli-twin")))
    second = str(write_plugin("cli_twin_b", model_plugin("cli-twin")))
    result = invoke("--plugin", first, "--plugin", second, "list", "models")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: model 'cli-twin' is registered twice")
    assert first in result.stderr and second in result.stderr
    assert "Traceback" not in result.output


# A new user's mistakes: malformed specs, bad data, missing files, name clashes

SPEC_PLUGIN = """
import torch
from torch import nn

from harness import hookimpl
from harness.data import Splits, TensorSplit
from harness.options import Option
from harness.registry.specs import DatasetSpec, ModelSpec


def load(options, context):
    split = lambda n: TensorSplit(torch.randn(n, 4), torch.arange(n) % 2)
    return Splits(split(8), split(4), split(4), input_shape=(4,), num_classes=2)


def build(input_shape, num_classes):
    return nn.Linear(4, num_classes)


@hookimpl
def register_{kind}s(register):
    register({spec})
"""

MALFORMED = {
    "sizes-tuple": (
        "dataset",
        'DatasetSpec("toy", "", load, input_shape=(4,), num_classes=2, sizes=(700, 150, 150))',
        "DatasetSpec 'toy': sizes must be a dict {'train': int, 'val': int, 'test': int}",
        "got tuple (700, 150, 150)",
    ),
    "build-not-callable": (
        "model",
        'ModelSpec("toy", "", build="nn.Linear")',
        "ModelSpec 'toy': build must be a function",
        "got str 'nn.Linear'",
    ),
    "options-not-options": (
        "model",
        'ModelSpec("toy", "", build, options={"hidden": 32})',
        "ModelSpec 'toy': options must be a mapping of option name to harness.options.Option",
        "got dict {'hidden': 32}",
    ),
    "tasks-a-string": (
        "model",
        'ModelSpec("toy", "", build, tasks="regression")',
        "ModelSpec 'toy': tasks must be a non-empty tuple of task names",
        "got str 'regression'",
    ),
    "input-shape-a-list": (
        "model",
        'ModelSpec("toy", "", build, input_shape=[1, 28, 28])',
        "ModelSpec 'toy': input_shape must be a tuple of positive ints",
        "got list [1, 28, 28]",
    ),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_spec_fails_its_plugin_naming_the_field(write_plugin: WritePlugin, case: str):
    kind, spec, message, got = MALFORMED[case]
    path = write_plugin("malformed", SPEC_PLUGIN.format(kind=kind, spec=spec))
    plugins = load_plugins([str(path)])
    failure = info(plugins, path)
    assert failure.status == "failed"
    assert failure.error.startswith(f"register_{kind}s: {message}"), failure.error
    assert got in failure.error
    assert "toy" not in getattr(plugins.registry, f"{kind}s")
    assert "mlp" in plugins.registry.models and "digits" in plugins.registry.datasets


def test_cli_malformed_dataset_is_one_warning_and_the_listing_goes_on(write_plugin: WritePlugin):
    spec = MALFORMED["sizes-tuple"][1]
    path = str(write_plugin("cli_sizes", SPEC_PLUGIN.format(kind="dataset", spec=spec)))
    result = invoke("--plugin", path, "list", "datasets")
    assert result.exit_code == 0, result.output
    assert "| digits " in result.stdout and "toy" not in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"warning: plugin 'cli_sizes' ({path}) failed to load: ")
    assert "DatasetSpec 'toy': sizes must be" in line
    assert "Traceback" not in result.output


BAD_DATA_PLUGIN = """
import numpy as np
import torch

from harness import hookimpl
from harness.data import Splits, TensorSplit
from harness.registry.specs import DatasetSpec


def labels_beyond_classes(options, context):
    split = lambda n: TensorSplit(torch.randn(n, 4), torch.arange(n) % 3)  # 0, 1, 2
    return Splits(split(8), split(4), split(4), input_shape=(4,), num_classes=2)


def float_labels(options, context):
    split = lambda n: TensorSplit(torch.randn(n, 4), (torch.arange(n) % 2).float())
    return Splits(split(8), split(4), split(4), input_shape=(4,), num_classes=2)


def numpy_arrays(options, context):
    split = lambda n: TensorSplit(np.zeros((n, 4), "float32"), np.arange(n) % 2)
    return Splits(split(8), split(4), split(4), input_shape=(4,), num_classes=2)


def a_tuple(options, context):
    return (torch.randn(8, 4), torch.arange(8) % 2)


@hookimpl
def register_datasets(register):
    for name, load in [("beyond", labels_beyond_classes), ("floats", float_labels),
                       ("arrays", numpy_arrays), ("tuple", a_tuple)]:
        register(DatasetSpec(name, "bad data", load, input_shape=(4,), num_classes=2))
"""


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("beyond", "the train split's class labels run from 0 to 2, outside the dataset's 2"),
        ("floats", "the train split's targets are a torch.float32 tensor of shape (8,)"),
        ("arrays", "the train split's x is ndarray of shape (8, 4) and dtype float32"),
        ("tuple", "load returned tuple"),
    ],
)
def test_bad_data_is_an_error_naming_the_dataset(write_plugin: WritePlugin, dataset, message):
    registry = load_plugins([str(write_plugin("bad_data", BAD_DATA_PLUGIN))]).registry
    task = registry.tasks.get("classification")
    with pytest.raises(BenchError) as raised:
        registry.datasets.get(dataset).open({}, DataContext(seed=0), task)
    assert str(raised.value).startswith(f"dataset '{dataset}': {message}"), raised.value


def test_cli_run_on_labels_beyond_the_classes_names_the_dataset(
    write_plugin: WritePlugin, tmp_path: Path
):
    path = str(write_plugin("cli_bad_data", BAD_DATA_PLUGIN))
    args = ["--plugin", path, "run", "--model", "mlp", "--dataset", "beyond", "--epochs", "1"]
    result = invoke(*args, "--json", "--out", str(tmp_path / "out"))
    (run,) = json.loads(result.stdout)["runs"]
    assert run["status"] == "failed"
    assert "dataset 'beyond': the train split's class labels run from 0 to 2" in run["error"]
    assert "IndexError" not in result.output


@pytest.mark.parametrize(
    "where", ["group", "command", "list-group"], ids=["bench-X", "list-models-X", "list-X-models"]
)
def test_cli_missing_plugin_file_is_an_error(tmp_path: Path, monkeypatch, where: str):
    monkeypatch.chdir(tmp_path)
    plugin = ["--plugin", "nowhere.py"]
    args = {
        "group": [*plugin, "list", "models"],
        "command": ["list", "models", *plugin],
        "list-group": ["list", *plugin, "models"],
    }[where]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    full = (tmp_path / "nowhere.py").resolve()
    assert result.stderr == f"error: --plugin nowhere.py: no such file ({full})\n"


def test_cli_missing_plugin_file_in_the_env_var_is_an_error(tmp_path: Path):
    missing = tmp_path / "gone.py"
    result = CliRunner().invoke(cli, ["run", "--model", "mlp"], env={ENV_VAR: str(missing)})
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {ENV_VAR} names {missing}: no such file\n"


def test_cli_plugin_option_between_list_and_its_subcommand(write_plugin: WritePlugin):
    path = str(write_plugin("cli_list_group", model_plugin("between-model")))
    result = invoke("list", "--plugin", path, "models")
    assert result.exit_code == 0, result.output
    assert "| between-model " in result.stdout


def test_every_command_that_loads_plugins_takes_the_plugin_option():
    """The README: --plugin goes before the command or after any command but these, which read
    only stored files (or write a skeleton)."""
    without = {"new-plugin", "compare", "history", "add", "detect", "html", "rebuild"}

    def commands(group, prefix=()):
        for name, command in group.commands.items():
            yield (*prefix, name), command
            if hasattr(command, "commands"):
                yield from commands(command, (*prefix, name))

    lacking = [
        " ".join(path)
        for path, command in commands(cli)
        if path[-1] not in without and "--plugin" not in {o for p in command.params for o in p.opts}
    ]
    assert not lacking, f"commands without --plugin: {lacking}"


def test_duplicate_name_is_recorded_on_both_plugins_when_not_strict(write_plugin: WritePlugin):
    first = write_plugin("lax_a", model_plugin("lax", "lax-only-a"))
    second = write_plugin("lax_b", model_plugin("lax", "lax-only-b"))
    plugins = load_plugins([str(first), str(second)], strict=False)
    (conflict,) = plugins.conflicts
    assert conflict.startswith("model 'lax' is registered twice")
    for path in (first, second):
        plugin = info(plugins, path)
        assert (plugin.status, plugin.conflicts) == ("conflict", [conflict])
    assert info(plugins, second).provides == ["model lax-only-b"]  # the clash did not stop it
    assert plugins.registry.models.source("lax") == f"plugin 'lax_a' ({first})"


def test_cli_list_plugins_shows_both_plugins_of_a_duplicate_name(write_plugin: WritePlugin):
    first = str(write_plugin("cli_dup_a", model_plugin("cli-dup")))
    second = str(write_plugin("cli_dup_b", model_plugin("cli-dup")))
    result = invoke("--plugin", first, "--plugin", second, "list", "plugins", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    message = (
        f"model 'cli-dup' is registered twice: by plugin 'cli_dup_a' ({first}) "
        f"and by plugin 'cli_dup_b' ({second})"
    )
    for name in ("cli_dup_a", "cli_dup_b"):
        assert (rows[name]["status"], rows[name]["conflicts"]) == ("conflict", [message])
    assert rows["models"]["status"] == "loaded"
    assert result.stderr == f"warning: {message}\n"
    table = invoke("--plugin", first, "--plugin", second, "list", "plugins").stdout
    assert table.count(message) == 2
    other = CliRunner().invoke(cli, ["--plugin", first, "--plugin", second, "list", "models"])
    assert other.exit_code == 2 and other.stderr.startswith(f"error: {message}")
