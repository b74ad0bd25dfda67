"""Registers the suite files shipped in ``suites/`` (installed as ``bench_plugins.suite_files``)."""

from importlib.resources import files
from pathlib import Path

from harness import hookimpl
from harness.planning.suite_files import suite_from_file


def suite_files() -> list[Path]:
    folder = Path(str(files("bench_plugins.suite_files")))
    return sorted(folder.glob("*.toml"))


@hookimpl
def register_suites(register):
    for path in suite_files():
        register(suite_from_file(path))
