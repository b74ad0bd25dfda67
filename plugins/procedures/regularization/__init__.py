"""The ``regularization`` study: dropout x weight decay, L1, L2 two ways, dropout two ways, early
stopping and augmentation (:mod:`.study`), with its cells (:mod:`.grid_cells`), report
(:mod:`.report`), figures (:mod:`.figures`) and augmentation's measured cost
(:mod:`.interleaved_cost`).

Registered like any plugin's: this package is the ``regularization`` entry point of the
``bench`` group. The hook imports the study (and so torch) only when a command asks for
procedures.
"""

from harness import hookimpl


@hookimpl
def register_procedures(register):
    from bench_plugins.procedures.regularization.study import PROCEDURE

    register(PROCEDURE)
