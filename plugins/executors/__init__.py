"""The built-in executors: ``local`` (one run at a time in this process, :mod:`.local`),
``processes`` (``--jobs N`` worker processes, :mod:`.processes`) and ``dask`` (a Dask cluster,
:mod:`.dask_cluster`).

Registered like any plugin's: this package is the ``executors`` entry point of the ``bench``
group. Each executor's module is imported only when that executor is asked for (so Dask only for
``--executor dask``).
"""

from importlib import import_module

from harness import ExecutorSpec, hookimpl


def _created_by(module: str):
    """``create`` of ``bench_plugins.executors.<module>``, imported when first used."""

    def create(request):
        return import_module(f"bench_plugins.executors.{module}").create(request)

    return create


@hookimpl
def register_executors(register):
    register(
        ExecutorSpec(
            "local", "one run at a time in this process (the default)", _created_by("local")
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
