"""The built-in result sink: ``tensorboard`` (``--tensorboard DIR``, :mod:`.tensorboard`).

Registered like any plugin's: this package is the ``sinks`` entry point of the ``bench`` group.
TensorBoard is imported only when the sink is opened.
"""

from harness import SinkSpec, hookimpl


def _open_tensorboard(context):
    from bench_plugins.sinks.tensorboard import open_sink

    return open_sink(context)


@hookimpl
def register_result_sinks(register):
    register(
        SinkSpec(
            "tensorboard",
            "per-epoch scalars, timings and a grid's HParams as TensorBoard event files in "
            "TARGET (pip install 'bench-harness[tensorboard]')",
            _open_tensorboard,
            needs_target=True,
        )
    )
