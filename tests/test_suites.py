"""Suite files: parsing, validation errors that name file and key, expansion into runs."""

import pytest

from harness.errors import SuiteError
from harness.planning.overrides import Overrides, load_suite_with
from harness.planning.suite_files import parse_suite

SOURCE = "my-suite.toml"


def parse(registry, **data):
    return parse_suite(data, registry, source=SOURCE, default_name="mine")


def plan(registry, suite):
    return registry.procedures.get(suite.procedure).plan(suite, registry)


def test_minimal_suite_gets_defaults(registry):
    suite = parse(registry, models=["mlp"])
    assert suite.name == "mine" and suite.procedure == "accuracy"
    assert [d.name for d in suite.datasets] == ["digits"]
    assert suite.seeds == [0] and suite.device == "auto"


def test_expansion_is_models_x_datasets_x_grid_x_seeds(registry):
    suite = parse(
        registry,
        models=["mlp", {"name": "mlp", "label": "mlp-10", "options": {"hidden": 10}}],
        datasets=["digits"],
        seeds=[0, 1],
        grid={"lr": [0.1, 0.01], "model.dropout": [0.0, 0.5]},
    )
    runs = plan(registry, suite)
    assert len(runs) == 2 * 1 * 4 * 2
    assert len({r.hash for r in runs}) == len(runs)
    labelled = [r for r in runs if r.config["model_label"] == "mlp-10"]
    assert {r.config["model_options"]["hidden"] for r in labelled} == {10}
    assert {(r.config["train"]["lr"], r.config["model_options"]["dropout"]) for r in labelled} == {
        (0.1, 0.0),
        (0.1, 0.5),
        (0.01, 0.0),
        (0.01, 0.5),
    }


def test_run_hash_is_stable_and_covers_seed(registry):
    suite = parse(registry, models=["mlp"], seeds=[0, 1])
    first, again = plan(registry, suite), plan(registry, suite)
    assert [r.hash for r in first] == [r.hash for r in again]
    assert first[0].hash != first[1].hash


def test_model_options_table_applies_to_entries(registry):
    suite = parse(registry, models=["mlp", "lenet5"], model_options={"mlp": {"hidden": [64, 32]}})
    assert suite.models[0].options == {"hidden": [64, 32]}
    assert suite.models[1].options == {}


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        ({"models": ["mlp"], "epochs": 3}, "epochs", "unknown key"),
        ({"models": ["mlpp"]}, "models[0].name", "Did you mean 'mlp'"),
        ({"models": "mlp", "datasets": ["digitz"]}, "datasets[0].name", "Did you mean 'digits'"),
        ({"models": []}, "models", "non-empty list"),
        ({"models": [{"label": "x"}]}, "models[0]", "'name' key"),
        ({"models": [{"name": "mlp", "opts": {}}]}, "models[0].opts", "unknown key"),
        ({"models": ["mlp"], "seeds": [-1]}, "seeds", "non-negative"),
        ({"models": ["mlp"], "seeds": "0"}, "seeds", "expected an array"),
        ({"models": ["mlp"], "train": {"epochs": "ten"}}, "train.epochs", "epochs='ten'"),
        ({"models": ["mlp"], "train": {"epoch": 3}}, "train.epoch", "Did you mean 'epochs'"),
        ({"models": ["mlp"], "grid": {"lr": 0.1}}, "grid.lr", "non-empty list"),
        ({"models": ["mlp"], "grid": {"colour": [1]}}, "grid.colour", "training option"),
        (
            {"models": ["mlp"], "model_options": {"lenet5": {}}},
            "model_options.lenet5",
            "not one of",
        ),
        (
            {"models": [{"name": "mlp", "options": {"hidden": 0}}]},
            "models[0].options.hidden",
            ">= 1",
        ),
        ({"models": ["mlp"], "procedure": "magic"}, "procedure", "unknown procedure"),
        ({"models": ["mlp"], "accuracy": {"x": 1}}, "accuracy.x", "unknown option"),
    ],
)
def test_malformed_suites_name_file_and_key(registry, data, key, message):
    with pytest.raises(SuiteError) as info:
        parse(registry, **data)
    text = str(info.value)
    assert SOURCE in text and f"key '{key}'" in text and message in text


def test_builtin_suites_parse(registry):
    for spec in registry.suites:
        suite = load_suite_with(spec.name, registry, Overrides())
        assert plan(registry, suite), spec.name


def test_invalid_toml_names_the_file(registry, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("models = [\n")
    with pytest.raises(SuiteError, match="broken.toml is not valid TOML"):
        load_suite_with(str(path), registry, Overrides())


def test_missing_suite_file(registry, tmp_path):
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite_with(str(tmp_path / "nope.toml"), registry, Overrides())


def test_unknown_suite_name_lists_known(registry):
    with pytest.raises(Exception, match="Known suites: .*quickstart"):
        load_suite_with("quikstart", registry, Overrides())


def test_overrides_replace_models_options_training_and_seeds(registry):
    overrides = Overrides(
        models=["lenet5"], model_options={"width": "0.5"}, train={"epochs": 2}, seeds=[3, 4]
    )
    suite = load_suite_with("quickstart", registry, overrides)
    assert [m.name for m in suite.models] == ["lenet5"]
    assert suite.models[0].options == {"width": "0.5"}
    assert suite.train["epochs"] == 2 and suite.train["lr"] == 0.01
    assert suite.seeds == [3, 4]


def test_a_training_flag_wins_over_an_entrys_own_train_table(registry):
    """sequences sets epochs per dataset; --epochs 1 must still mean one epoch everywhere."""
    suite = load_suite_with("sequences", registry, Overrides(train={"epochs": 1}))
    assert {d.name: d.train["epochs"] for d in suite.datasets} == dict.fromkeys(
        ("wti", "surnames", "python-docs"), 1
    )
    assert suite.train["lr"] == 0.003  # the rest of the suite's training stands
    plain = load_suite_with("sequences", registry, Overrides())
    assert [d.train["epochs"] for d in plain.datasets] == [15, 6, 6]


def test_one_off_suite_needs_model_and_dataset(registry):
    with pytest.raises(SuiteError, match="--model and one --dataset"):
        load_suite_with(None, registry, Overrides(models=["mlp"]))
    suite = load_suite_with(None, registry, Overrides(models=["mlp"], datasets=["mnist1d"]))
    assert suite.name == "mlp-mnist1d" and suite.source == "command line"
