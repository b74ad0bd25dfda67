"""Every hook a bench plugin can implement. Each docstring is that hook's documentation.

Implement a hook by defining a function of the same name marked ``@hookimpl`` in a module that is
registered through the ``bench`` entry-point group or named with ``--plugin``.

A hook receives a ``register`` callback and calls it once per thing it provides, so a plugin can
provide any number of models, datasets, suites or pruning methods from one function::

    from harness import ModelSpec, hookimpl

    @hookimpl
    def register_models(register):
        register(ModelSpec(name="tiny", description="...", build=build_tiny))
"""

import pluggy

hookspec = pluggy.HookspecMarker("bench")


@hookspec
def register_models(register):
    """Register models: call ``register(ModelSpec(...))`` once per model.

    ``ModelSpec.build(input_shape, num_classes, **options)`` must return a fresh ``nn.Module``
    that maps a batch of ``input_shape`` inputs to what the dataset's task expects (for
    classification, ``num_classes`` logits; for other tasks ``num_classes`` is the number of
    outputs: targets per sample, or the vocabulary). A ``build`` with a parameter named ``data``
    also receives the dataset's :class:`harness.DataInfo` (task, vocabulary, ...).
    ``ModelSpec.tasks`` names the tasks the model supports (default: classification); a dataset
    of another task is refused before any training. Options declared in ``ModelSpec.options``
    are parsed and validated from ``--model-opt key=value`` before ``build`` is called. Names
    must be unique across all loaded plugins.

    Built in: ``mlp``, ``cnn``, ``cnn-small``, ``lenet5``, ``convnet``, ``rnn``, ``lstm``, ``gru``,
    ``autoencoder``, ``conv-autoencoder``, ``vae``, ``resnet18`` and ``alexnet``.
    """


@hookspec
def register_datasets(register):
    """Register datasets: call ``register(DatasetSpec(...))`` once per dataset.

    ``DatasetSpec.load(options, context)`` returns :class:`harness.Splits` (train, validation
    and test), deterministic for ``context.seed``; ``DatasetSpec.task`` names the task its
    targets are for (default: classification). ``DatasetSpec.unavailable(options, context)``
    returns ``None`` when the data can be loaded, or a sentence saying what is missing and how to
    get it; nothing may be downloaded unless ``context.download`` is true.

    Built in: ``digits``, ``mnist1d``, ``synthetic``, ``mnist-5k``, ``wti``, ``surnames``,
    ``python-docs``, and from files ``mnist``, ``fashion-mnist``, ``cifar10`` and ``image-folder``.
    """


@hookspec
def register_tasks(register):
    """Register tasks: call ``register(Task(...))`` once per task (:class:`harness.Task`).

    A task says how a model's outputs are trained and scored against a dataset's targets: its
    ``loss(outputs, targets)``, a ``meter(info, train)`` that accumulates its metrics over
    batches, the ``metrics`` it reports (each with a direction and a unit) and the ``headline``
    one, a ``check(outputs, targets, info)`` of a model's output run on a real batch before any
    training, and ``prepare(inputs)`` turning a batch's inputs into the model's input. Training,
    evaluation, timing, FLOP counts and ``bench compare`` all go through it.

    Built in: ``classification``, ``regression``, ``sequence-classification``,
    ``language-model``, ``reconstruction`` and ``vae``.
    """


@hookspec
def register_suites(register):
    """Register suites: call ``register(SuiteSpec(...))`` once per suite.

    Use :func:`harness.suite_from_file` to register a TOML suite file shipped with the
    plugin. Suites are data: they are validated, never executed.

    Built in: ``quickstart``, ``cnn-pruning``, ``regularization``, ``augmentation``,
    ``transfer``, ``sequences``, ``autoencoders``, ``course`` and ``throughput``.
    """


@hookspec
def register_procedures(register):
    """Register suite procedures: call ``register(Procedure(...))`` once per procedure.

    A procedure is what a suite's ``procedure = "..."`` key names: it turns the suite's settings
    into runs, executes one run at a time and renders the report from stored results.

    Built in: ``accuracy``, ``throughput``, ``pruning``, ``regularization``, ``transfer`` and
    ``course``.
    """


@hookspec
def register_pruning_methods(register):
    """Register pruning methods: call ``register(PruningMethod(...))`` once per method
    (``from bench_plugins.procedures.pruning.methods import PruningMethod``: the pruning study's
    own extension point).

    ``PruningMethod.prune(model, target, context)`` receives a trained model and a target fraction
    of parameters to remove and returns the pruned model (masks made permanent or layers
    physically shrunk). ``context.prune_classifier`` is the suite's setting (whether the final
    classifier may be pruned); a method that measured the target against only the weights it may
    prune says so in ``context.notes`` (``target_of``), which the run's metrics keep. Suite files
    name methods in ``[pruning] methods``.

    Built in: ``random``, ``layer-magnitude``, ``global-magnitude`` and ``structured``.
    """


@hookspec
def register_executors(register):
    """Register executors: call ``register(ExecutorSpec(...))`` once per executor
    (:class:`harness.ExecutorSpec`).

    ``--executor NAME`` (or ``NAME://ADDRESS`` for a spec with ``address=True``) selects one;
    ``ExecutorSpec.create(request)`` builds it for one suite from an
    :class:`harness.ExecutorRequest` (``--jobs``, threads per run, the address). The
    executor has ``slots`` (runs at once) and ``threads`` (per run), ``submit(job, progress)``
    returning a ``concurrent.futures.Future`` of a :class:`harness.Outcome` (raise
    :class:`harness.WorkerLost` into it when the worker died), ``describe()`` for the
    results file, and ``close()``. Perform each job with :func:`harness.perform` wherever
    it runs.

    Built in: ``local``, ``processes`` and ``dask``.
    """


@hookspec
def register_result_sinks(register):
    """Register result sinks: call ``register(SinkSpec(...))`` once per sink
    (:class:`harness.SinkSpec`).

    ``--sink NAME[=TARGET]`` on ``bench run`` and ``bench time`` opens one for a suite:
    ``SinkSpec.open(context)`` receives a :class:`harness.SinkContext` (the target, the
    output directory, the results document) and returns a sink whose ``record(run, results)``
    is called with each run's record right after the results file holding it is written, and
    whose ``close(results)`` is called once when the suite ends. A sink that raises is reported
    and dropped; the results file is never affected.

    Built in: ``tensorboard`` (``--tensorboard DIR`` is ``--sink tensorboard=DIR``).
    """
