"""Property-based tests (hypothesis) of suite parsing, option validation and file names.

Suite documents are what ``tomllib`` returns: tables, arrays, strings, numbers (NaN and infinity
included), booleans and dates, mixed with the names and keys a real suite uses so that the
parser is driven past its first checks.
"""

from __future__ import annotations

import contextlib
import math
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import BenchError, OptionError
from harness.options import Option, resolve_options
from harness.planning.overrides import Overrides
from harness.planning.suite_files import Run, parse_suite, safe_name
from harness.planning.train_settings import TRAIN_OPTIONS

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(max_size=10),
    st.dates(),
    st.datetimes(),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
numbers = st.one_of(st.integers(-2, 200), st.floats(-1, 150), st.sampled_from(["0.5", "3", "x"]))
anything = st.one_of(values, numbers, st.sampled_from(["mlp", "digits", "../x", "cuda", "nan"]))

MODELS = ["mlp", "lenet5", "cnn-small"]
TABLES = {  # the tables of a suite and keys they may hold, valid or nearly so
    "train": ["epochs", "lr", "momentum", "weight_decay", "optimizer", "batch_size", "epoch"],
    "grid": ["lr", "epochs", "model.hidden", "model.dropout", "model.width", "dataset.size", "x"],
    "model_options": MODELS,
    "dataset_options": ["digits", "synthetic", "mnist1d"],
    "pruning": ["targets", "methods", "quick", "finetune_epochs", "target"],
    "throughput": ["batch_sizes", "quick", "amp", "modes"],
}
TOP_LEVEL = ["name", "description", "procedure", "models", "datasets", "seeds", "device", "extra"]


@st.composite
def documents(draw) -> dict:
    """A valid suite of a random procedure, then up to three random changes to it."""
    procedure = draw(st.sampled_from(["accuracy", "pruning", "throughput"]))
    document = {
        "procedure": procedure,
        "models": draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=3, unique=True)),
        "datasets": ["synthetic" if procedure == "throughput" else "digits"],
        "seeds": draw(st.lists(st.integers(0, 9), min_size=1, max_size=2, unique=True)),
        "train": {"epochs": draw(st.integers(1, 3))},
    }
    if draw(st.booleans()):
        document["grid"] = {"lr": draw(st.lists(st.floats(1e-3, 1), min_size=1, unique=True))}
    if procedure == "pruning":
        targets = st.lists(st.floats(0, 99), min_size=1, max_size=3, unique=True)
        document["pruning"] = {"targets": draw(targets), "quick": draw(st.booleans())}
    for _ in range(draw(st.integers(0, 3))):
        table = draw(st.sampled_from([*TABLES, *TOP_LEVEL]))
        if table in TABLES and isinstance(document.get(table, {}), dict):
            key = draw(st.sampled_from(TABLES[table]))
            document[table] = {**document.get(table, {}), key: draw(anything)}
        elif table == "models" and draw(st.booleans()):
            entry = {"name": draw(st.sampled_from([*MODELS, "mlpp"]))}
            entry.update(
                draw(st.dictionaries(st.sampled_from(["label", "options", "x"]), anything))
            )
            models = document["models"] if isinstance(document["models"], list) else []
            document["models"] = [*models, entry]
        else:
            document[table] = draw(anything)
    return document


def parse_and_plan(registry, document):
    suite = parse_suite(document, registry, source="fuzz.toml")
    return registry.procedures.get(suite.procedure).plan(suite, registry)


def assert_names_file_and_key(error: BenchError) -> None:
    """A suite's error says which file and which key (``suite file fuzz.toml: key 'x': ...``)."""
    assert re.match(r"suite file fuzz\.toml: key '[^']+': \S", str(error)), str(error)


@FUZZ
@given(document=documents())
def test_any_document_is_planned_or_refused_naming_file_and_key(registry, document):
    try:
        parse_and_plan(registry, document)
    except BenchError as exc:
        assert_names_file_and_key(exc)


@FUZZ
@given(document=documents())
def test_command_line_overrides_never_crash_on_a_malformed_document(registry, document):
    overrides = Overrides(
        models=["mlp"],
        model_options={"hidden": "8"},
        dataset_options={"size": "8"},
        train={"epochs": 2},
        seeds=[1],
        settings={"quick": "true"},
    )
    try:
        parse_and_plan(registry, overrides.apply(document))
    except BenchError as exc:
        assert_names_file_and_key(exc)


@settings(max_examples=100, deadline=None)
@given(
    models=st.lists(st.sampled_from(["mlp", "lenet5", "cnn-small", "convnet"]), min_size=1,
                    max_size=3, unique=True),
    datasets=st.lists(st.sampled_from(["digits", "mnist1d"]), min_size=1, max_size=2, unique=True),
    seeds=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=3, unique=True),
    lrs=st.lists(st.floats(1e-4, 1.0), max_size=3, unique=True),
    epochs=st.lists(st.integers(1, 50), max_size=3, unique=True),
    dropouts=st.lists(st.floats(0.0, 0.99), max_size=2, unique=True),
)  # fmt: skip
def test_valid_suites_expand_to_the_full_product(
    registry, models, datasets, seeds, lrs, epochs, dropouts
):
    grid = {"lr": lrs, "epochs": epochs, "model.dropout": dropouts}
    grid = {key: values for key, values in grid.items() if values}
    document = {"models": models, "datasets": datasets, "seeds": seeds, "grid": grid}
    runs = parse_and_plan(registry, document)
    expected = len(models) * len(datasets) * len(seeds) * math.prod(map(len, grid.values()))
    assert len(runs) == expected
    assert len({run.hash for run in runs}) == len(runs)
    assert [run.index for run in runs] == list(range(len(runs)))


def accepts(option: Option, value) -> bool:
    try:
        option.coerce(value)
    except ValueError:
        return False
    return True


bounds = st.one_of(st.none(), st.integers(-100, 100))


@settings(max_examples=300)
@given(minimum=bounds, maximum=bounds, value=st.one_of(st.integers(-200, 200), st.booleans()))
def test_int_options_accept_exactly_the_values_in_range(minimum, maximum, value):
    option = Option(0, "n", "int", minimum=minimum, maximum=maximum)
    in_range = (
        not isinstance(value, bool)
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
    )
    assert accepts(option, value) == in_range
    if not isinstance(value, bool):  # the same number typed on the command line
        assert accepts(option, str(value)) == in_range


@settings(max_examples=300)
@given(
    minimum=st.one_of(st.none(), st.floats(-10, 10)),
    below=st.one_of(st.none(), st.floats(-10, 10)),
    value=st.one_of(st.floats(), st.integers(-20, 20)),
)
def test_float_options_accept_exactly_the_finite_values_in_range(minimum, below, value):
    option = Option(0.0, "x", "float", minimum=minimum, below=below)
    number = float(value)
    in_range = (
        math.isfinite(number)
        and (minimum is None or number >= minimum)
        and (below is None or number < below)
    )
    assert accepts(option, value) == in_range
    assert accepts(option, repr(number)) == in_range
    if in_range:
        assert option.coerce(value) == number and isinstance(option.coerce(value), float)


@settings(max_examples=300)
@given(value=values)
def test_coerce_refuses_anything_with_a_value_error(value):
    for option in [*TRAIN_OPTIONS.values(), Option((1,), "l", "ints", minimum=1)]:
        with contextlib.suppress(ValueError):
            option.coerce(value)


@settings(max_examples=300)
@given(value=st.one_of(st.floats(), st.integers(-5, 200)))
def test_the_documented_ranges(registry, value):
    """epochs, batch size > 0; lr > 0 (from 1e-12); weight decay >= 0; 0 <= momentum, dropout
    < 1; pruning targets in [0, 100)."""
    number = float(value)
    finite = math.isfinite(number)
    is_int = isinstance(value, int)
    pruning = registry.procedures.get("pruning").settings
    expectations = {
        TRAIN_OPTIONS["epochs"]: is_int and value >= 1,
        TRAIN_OPTIONS["batch_size"]: is_int and value >= 1,
        TRAIN_OPTIONS["lr"]: finite and number >= 1e-12,
        TRAIN_OPTIONS["weight_decay"]: finite and number >= 0,
        TRAIN_OPTIONS["momentum"]: finite and 0 <= number < 1,
        registry.models.get("mlp").options["dropout"]: finite and 0 <= number < 1,
        pruning["targets"]: finite and 0 <= number < 100,
    }
    for option, expected in expectations.items():
        assert accepts(option, value) == expected, (option.help, value)


SAFE = re.compile(r"[A-Za-z0-9_,=+@-][A-Za-z0-9._,=+@-]*")


@settings(max_examples=300)
@given(text=st.text())
def test_safe_names_are_one_harmless_path_component(text):
    name = safe_name(text)
    assert SAFE.fullmatch(name)
    assert safe_name(name) == name


@settings(max_examples=300)
@given(
    given_options=st.dictionaries(
        st.sampled_from([*TRAIN_OPTIONS, "epoch", "learning_rate", "x"]), anything, max_size=4
    )
)
def test_option_errors_name_the_option_at_fault(given_options):
    """What a suite file's message calls ``train.KEY``: the first bad option given."""
    try:
        resolved = resolve_options("training", TRAIN_OPTIONS, given_options)
    except OptionError as exc:
        assert exc.key in given_options and exc.key in str(exc)
    else:
        assert resolved.keys() == TRAIN_OPTIONS.keys()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
configs = st.dictionaries(st.text(max_size=6), json_values, min_size=1, max_size=5)  # as planned


@settings(max_examples=300)
@given(config=configs, data=st.data())
def test_run_hash_depends_on_the_configuration_not_its_key_order(config, data):
    """``--resume`` matches runs by this hash: the same configuration in another order (as
    another process may build it) must match, and any changed value must not."""
    keys = data.draw(st.permutations(list(config)))
    assert Run(0, "accuracy", {k: config[k] for k in keys}).hash == Run(5, "accuracy", config).hash
    key = data.draw(st.sampled_from(list(config)))
    changed = {**config, key: [config[key]]}  # another value, whatever the first one was
    assert Run(0, "accuracy", changed).hash != Run(0, "accuracy", config).hash
