"""The ``transfer`` study: pretrain on a source dataset, transfer to a target, with its report
(:mod:`.report`).

Registered like any plugin's: this package is the ``transfer`` entry point of the ``bench`` group.
The hook imports the study (and so torch) only when a command asks for procedures.
"""

from harness import hookimpl


@hookimpl
def register_procedures(register):
    from bench_plugins.procedures.transfer.study import PROCEDURE

    register(PROCEDURE)
