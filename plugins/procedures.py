"""Registers the built-in suite procedures."""

from harness import hookimpl
from harness.procedures import accuracy


@hookimpl
def register_procedures(register):
    register(accuracy.PROCEDURE)
