"""Registers the built-in suite procedures."""

from harness import hookimpl
from harness.procedures import accuracy, pruning, regularization, throughput


@hookimpl
def register_procedures(register):
    register(accuracy.PROCEDURE)
    register(pruning.PROCEDURE)
    register(regularization.PROCEDURE)
    register(throughput.PROCEDURE)
