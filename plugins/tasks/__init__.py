"""The built-in tasks: classification, regression, sequence-classification, language-model
(:mod:`.supervised`), and reconstruction and vae (:mod:`.generative`).

Registered like any plugin's: this package is the ``tasks`` entry point of the ``bench`` group.
The hook imports the tasks' modules (and so torch) only when a command asks for tasks.
"""

from harness import hookimpl


@hookimpl
def register_tasks(register):
    from bench_plugins.tasks import generative, supervised

    generative.register_tasks(register)
    supervised.register_tasks(register)
