"""Registers the built-in suite procedures."""

from harness import hookimpl
from harness.procedures import accuracy, pruning, throughput


@hookimpl
def register_procedures(register):
    register(accuracy.PROCEDURE)
    register(pruning.PROCEDURE)
    register(throughput.PROCEDURE)
