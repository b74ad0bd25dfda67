"""The ``course`` study: the seed course lab by lab (:mod:`.labs`, :mod:`.studies`), with
hand-written backpropagation (:mod:`.manual_backprop`).

Registered like any plugin's: this package is the ``course`` entry point of the ``bench`` group. The
hook imports the study (and so torch) only when a command asks for procedures.
"""

from harness import hookimpl


@hookimpl
def register_procedures(register):
    from bench_plugins.procedures.course.study import PROCEDURE

    register(PROCEDURE)
