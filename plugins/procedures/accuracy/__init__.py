"""The ``accuracy`` procedure: train each model on each dataset, per grid point and seed, then test.

Registered like any plugin's: this package is the ``accuracy`` entry point of the ``bench`` group.
The hook imports the study (and so torch) only when a command asks for procedures.
"""

from harness import hookimpl


@hookimpl
def register_procedures(register):
    from bench_plugins.procedures.accuracy.study import PROCEDURE

    register(PROCEDURE)
