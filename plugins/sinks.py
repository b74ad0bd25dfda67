"""Registers the built-in result sink: tensorboard (``--tensorboard DIR``)."""

from harness import hookimpl
from harness.sinks import SinkSpec


def _open_tensorboard(context):
    from harness.tensorboard_sink import open_sink  # imports TensorBoard only when asked for

    return open_sink(context)


@hookimpl
def register_result_sinks(register):
    register(
        SinkSpec(
            "tensorboard",
            "per-epoch scalars, timings and a grid's HParams as TensorBoard event files in "
            "TARGET (pip install 'bench[tensorboard]')",
            _open_tensorboard,
            needs_target=True,
        )
    )
