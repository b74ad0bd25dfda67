"""Registers the built-in executors: local (in this process), processes and dask."""

from importlib import import_module

from harness import hookimpl
from harness.executors import ExecutorSpec


def _created_by(module: str):
    """``create`` of ``harness.executors.<module>``, imported when first used (so Dask is
    imported only when it is asked for)."""

    def create(request):
        return import_module(f"harness.executors.{module}").create(request)

    return create


@hookimpl
def register_executors(register):
    register(
        ExecutorSpec(
            "local", "one run at a time in this process (the default)", _created_by("in_process")
        )
    )
    register(
        ExecutorSpec(
            "processes",
            "--jobs N worker processes (auto: the usable cores); --isolate: a fresh one per run",
            _created_by("processes"),
        )
    )
    register(
        ExecutorSpec(
            "dask",
            "a local Dask cluster of --jobs workers, or an existing one at dask://HOST:PORT",
            _created_by("dask_cluster"),
            address=True,
        )
    )
