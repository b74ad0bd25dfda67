"""Registers the built-in suite procedures."""

from harness import hookimpl
from harness.procedures import accuracy, course, pruning, regularization, throughput, transfer


@hookimpl
def register_procedures(register):
    register(accuracy.PROCEDURE)
    register(pruning.PROCEDURE)
    register(regularization.PROCEDURE)
    register(throughput.PROCEDURE)
    register(transfer.PROCEDURE)
    register(course.PROCEDURE)
