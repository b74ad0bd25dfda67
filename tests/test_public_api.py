"""One way in for plugin authors: ``from harness import ...``. Plugins written against the old
module paths keep working unchanged, with a DeprecationWarning naming the new path."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_scaffold import install_offline, listed_models, run_with_site

import harness
from harness.cli import cli
from harness.registry import hookspecs
from harness.registry.loading import HOOKS, load_plugins
from harness.registry.moved_paths import MOVED_MODULES

OLD_API = Path(__file__).parent / "data" / "old_api"
CONSTANTS = {"__version__", "HIGHER", "LOWER", "VAL_FRACTION"}


def test_import_harness_imports_nothing_heavy():
    """A plugin module importing ``harness`` (and ``bench --help``) pays for pluggy only."""
    code = (
        "import sys, harness; print([m for m in ('torch', 'numpy', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(set(harness.__all__) - CONSTANTS))
def test_every_public_name_resolves_and_is_documented(name: str):
    value = getattr(harness, name)
    assert inspect.getdoc(value), f"harness.{name} has no docstring"
    assert name in dir(harness)


def test_the_public_names_are_what_a_plugin_needs():
    needed = {"hookimpl", "ModelSpec", "DatasetSpec", "SuiteSpec", "Task", "Metric", "DataInfo"}
    needed |= {"Option", "BenchError", "Procedure", "RunContext", "Report", "Table"}
    needed |= {"Splits", "TensorSplit", "DataContext", "ExecutorSpec", "SinkSpec"}
    assert needed <= set(harness.__all__)


@pytest.mark.parametrize("old, new", sorted(MOVED_MODULES.items()))
def test_an_old_module_path_warns_and_serves_the_new_module(old: str, new: str):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=re.escape(f"{old} moved to {new}")):
        module = importlib.import_module(old)
    target = importlib.import_module(new)
    public = [n for n in vars(target) if not n.startswith("_")]
    assert all(getattr(module, n) is getattr(target, n) for n in public)


@pytest.mark.parametrize(
    "module, name, home",
    [
        ("harness.registry", "ModelSpec", "harness.registry.specs"),
        ("harness.registry", "DatasetSpec", "harness.registry.specs"),
        ("harness.options", "BenchError", "harness.errors"),
        ("harness.options", "UnknownNameError", "harness.errors"),
    ],
)
def test_an_old_name_warns_and_is_the_same_object(module: str, name: str, home: str):
    with pytest.warns(DeprecationWarning, match=f"{module}.{name} moved to {home}.{name}"):
        value = getattr(importlib.import_module(module), name)
    assert value is getattr(importlib.import_module(home), name)


def test_names_that_never_existed_are_still_attribute_errors():
    with pytest.raises(AttributeError):
        harness.registry.NoSuchThing  # noqa: B018
    with pytest.raises(AttributeError):
        harness.NoSuchThing  # noqa: B018


def test_old_api_single_file_plugin_trains_unchanged(tmp_path: Path):
    plugin = OLD_API / "single_file_plugin.py"
    args = ["--plugin", str(plugin), "run", "--model", "logistic", "--dataset", "digits"]
    args += ["--epochs", "1", "--quiet", "--json", "--out", str(tmp_path / "out")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"][0]["status"] == "ok"
    moved = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any("harness.registry.ModelSpec moved" in m for m in moved), moved


def test_old_api_regression_plugin_trains_unchanged(tmp_path: Path):
    plugin = OLD_API / "regression_plugin.py"
    args = ["--plugin", str(plugin), "run", "--model", "diabetes-mlp", "--dataset", "diabetes"]
    args += ["--epochs", "2", "--quiet", "--json", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["runs"][0]
    assert run["status"] == "ok" and run["metrics"]["test_rmse"] > 0


@pytest.mark.parametrize(
    "package, model", [("plugin-package", "tiny-cnn"), ("bench-old-api", "old-api-mlp")]
)
def test_old_api_packages_install_and_register_unchanged(package: str, model: str, tmp_path):
    """The example package and a package made by the old ``bench new-plugin``, installed through
    their entry points; the skeleton's own tests (old imports) pass too."""
    site, source = tmp_path / "site", tmp_path / package
    shutil.copytree(OLD_API / package, source)  # outside tests/, whose conftest ignores data/
    install_offline(source, site)
    assert model in listed_models(site)
    if package == "bench-old-api":
        tests = run_with_site(
            site, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            source / "tests", cwd=tmp_path,
        )  # fmt: skip
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert "2 passed" in tests.stdout


def builtin_names() -> dict[str, set[str]]:
    """What bench's own plugins register, by hook."""
    registry = load_plugins().registry
    return {
        hook: {
            name
            for name in getattr(registry, attribute).names()
            if "(bench-harness)" in getattr(registry, attribute).source(name)
        }
        for hook, attribute in HOOKS.items()
    }


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_each_hook_docstring_lists_exactly_what_is_built_in(hook: str):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc and "Built in:" in doc, f"{hook}'s docstring lists no built-ins"
    listed = set(re.findall(r"``([\w-]+)``", doc.split("Built in:")[1]))
    assert listed == builtin_names()[hook]
