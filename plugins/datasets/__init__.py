"""The built-in datasets: digits, mnist1d and synthetic (:mod:`.embedded`), mnist-5k
(:mod:`.mnist_5k`), the sequence data shipped inside installed packages (:mod:`.sequences`) and
the on-disk torchvision datasets (:mod:`.ondisk`).

Registered like any plugin's: this package is the ``datasets`` entry point of the ``bench``
group. The hook imports the datasets' modules (and so torch) only when a command asks for
datasets.
"""

from harness import hookimpl


@hookimpl
def register_datasets(register):
    from bench_plugins.datasets import embedded, mnist_5k, ondisk, sequences

    for module in (embedded, mnist_5k, ondisk, sequences):
        module.register_datasets(register)
