"""The ``pruning`` study: accuracy against parameters removed (after ShrinkBench), with its pruning
methods (:mod:`.methods`) and report (:mod:`.report`).

Registered like any plugin's: this package is the ``pruning`` entry point of the ``bench`` group.
The hook imports the study (and so torch) only when a command asks for procedures.
"""

from harness import hookimpl


@hookimpl
def register_procedures(register):
    from bench_plugins.procedures.pruning.study import PROCEDURE

    register(PROCEDURE)


@hookimpl
def register_pruning_methods(register):
    from bench_plugins.procedures.pruning.methods import BUILTIN_METHODS

    for method in BUILTIN_METHODS:
        register(method)
