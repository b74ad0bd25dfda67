"""The ``throughput`` procedure: latency, throughput, memory and FLOPs of models at several batch
sizes.

Registered like any plugin's: this package is the ``throughput`` entry point of the ``bench`` group.
The hook imports the study (and so torch) only when a command asks for procedures.
"""

from harness import hookimpl


@hookimpl
def register_procedures(register):
    from bench_plugins.procedures.throughput.study import PROCEDURE

    register(PROCEDURE)
