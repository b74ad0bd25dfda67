"""The built-in models: the course's small models (:mod:`.small`), recurrent models
(:mod:`.recurrent`), autoencoders and the VAE (:mod:`.autoencoders`) and torchvision's ResNet-18
and AlexNet (:mod:`.vision`).

Registered like any plugin's: this package is the ``models`` entry point of the ``bench`` group.
The hook imports the models' modules (and so torch) only when a command asks for models.
"""

from harness import hookimpl


@hookimpl
def register_models(register):
    from bench_plugins.models import autoencoders, recurrent, small, vision

    for module in (autoencoders, small, recurrent, vision):
        module.register_models(register)
