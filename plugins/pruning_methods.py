"""Registers the built-in pruning methods: random, layer-magnitude, global-magnitude, structured."""

from harness import hookimpl
from harness.pruning import BUILTIN_METHODS


@hookimpl
def register_pruning_methods(register):
    for method in BUILTIN_METHODS:
        register(method)
