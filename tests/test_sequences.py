"""Sequence data from installed packages, the recurrent models, their baselines, and the paths a
regression or language model takes through bench time, run, report and compare."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from bench_plugins.datasets.baselines import (
    linear_autoregression,
    majority_class,
    persistence,
    unigram_bits,
)
from bench_plugins.datasets.sequences import read_wti
from bench_plugins.datasets.surnames import LANGUAGES, LEFT_OUT, fold, surnames
from bench_plugins.tasks.supervised import SEQUENCE_CLASSIFICATION
from click.testing import CliRunner

from harness.cli import cli
from harness.data import DataContext
from harness.measuring.flops import forward_flops


def opened(registry, name, seed=0, **options):
    return registry.datasets.get(name).open(options, DataContext(seed=seed))


def test_wti_splits_are_chronological_and_normalised_with_the_past_only(registry):
    splits = opened(registry, "wti")
    dates, prices = read_wti()
    assert len(prices) == 8611 - 290  # holidays ('.') dropped
    assert dates[0] == np.datetime64("1986-01-02") and dates[-1] == np.datetime64("2019-01-03")
    mean, std = splits.target_scale
    n_train, n_val = len(splits.train), len(splits.val)
    window = splits.input_shape[0]
    # every split's targets are the next days after its windows, in time order, no overlap
    denormalised = [
        s.y.squeeze(1).double().numpy() * std + mean
        for s in (splits.train, splits.val, splits.test)
    ]
    np.testing.assert_allclose(np.concatenate(denormalised), prices[window:], rtol=1e-5)
    assert n_train + n_val + len(splits.test) == len(prices) - window
    # the statistics are the training period's: prices up to the last training target
    np.testing.assert_allclose(
        [mean, std], [prices[: n_train + window].mean(), prices[: n_train + window].std()]
    )
    assert splits.task == "regression" and splits.target_unit == "USD/barrel"
    # a window's last value is the day before its target
    np.testing.assert_allclose(splits.test.x[1:, -1, 0], splits.test.y[:-1, 0], rtol=1e-6)


def test_surnames_are_ascii_unambiguous_and_split_stratified(registry):
    names, labels, dropped = surnames()
    assert len(LANGUAGES) == 15 and set(LEFT_OUT) == {"Arabic", "Korean", "Scottish"}
    assert len(names) == len(set(names)) > 12_000 and dropped > 0  # in several languages: out
    assert all(name.isascii() for name in names)
    assert fold("Смирнов") == "Smirnov" and fold("Αβραμίδης") == "Avramidis"
    assert fold("Wiśniewski") == "Wisniewski"
    splits = opened(registry, "surnames", seed=1)
    assert splits.task == "sequence-classification" and splits.class_names == LANGUAGES
    train_share = np.bincount(splits.train.y, minlength=15) / len(splits.train)
    test_share = np.bincount(splits.test.y, minlength=15) / len(splits.test)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)  # stratified
    assert (splits.train.x[:, 0] != 0).all()  # every row starts with a character, then padding


def test_python_docs_sections_are_contiguous_and_targets_are_the_next_characters(registry):
    splits = opened(registry, "python-docs", characters=30_000, length=16)
    tokens = splits.vocabulary
    assert tokens[0] == "" and splits.vocab_size == len(tokens) == splits.num_classes
    train = "".join(tokens[i] for i in splits.train.x.flatten().tolist())
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key] for key in sorted(topics))[:30_000]
    assert text.startswith(train)  # every training character is in the vocabulary
    index = {token: i for i, token in enumerate(tokens)}
    expected = [index.get(c, 1) for c in text[len(text) - int(0.1 * len(text)) :]]  # the end
    assert splits.test.x.flatten().tolist() == expected[: splits.test.x.numel()]
    assert torch.equal(splits.train.x[:, 1:], splits.train.y[:, :-1])  # shifted by one


def test_recurrent_models_have_their_listed_parameter_counts(registry):
    for name, params, flops in (
        ("rnn", 4_353, 83_328),
        ("lstm", 17_217, 332_928),
        ("gru", 12_929, 249_728),
    ):
        spec = registry.models.get(name)
        model = spec.create(spec.input_shape, spec.num_classes)
        assert sum(p.numel() for p in model.parameters()) == params, name
        # the LSTM's fused CPU kernel is counted too (FLOPs are counted on a meta stand-in)
        assert forward_flops(model, spec.input_shape) == flops, name


def test_a_packed_sequence_is_classified_by_its_own_last_step(registry):
    """Padding after a name must not change its prediction."""
    splits = opened(registry, "surnames")
    torch.manual_seed(0)
    model = registry.models.get("gru").create(
        splits.input_shape, splits.num_classes, data=splits.info
    )
    model.eval()
    short = splits.test.x[:4]
    wider = torch.cat([short, torch.zeros(4, 7, dtype=torch.long)], dim=1)
    with torch.no_grad():
        a = model(SEQUENCE_CLASSIFICATION.prepare(short))
        b = model(SEQUENCE_CLASSIFICATION.prepare(wider))
    torch.testing.assert_close(a, b)


def test_baselines_on_hand_made_splits(registry):
    wti = opened(registry, "wti")
    x, y = wti.test.x.numpy(), wti.test.y.numpy()
    by_hand = math.sqrt(float(np.mean((x[:, -1] - y) ** 2))) * wti.target_scale[1]
    assert persistence(wti)["test_rmse"] == pytest.approx(by_hand)
    # a linear autoregression can represent persistence, so on its training windows it fits
    # at least as well; on these prices (close to a random walk) it is no better on test
    assert linear_autoregression(wti)["test_rmse"] == pytest.approx(by_hand, rel=0.05)
    names = opened(registry, "surnames")
    majority = int(torch.mode(names.train.y).values)
    assert majority_class(names)["test_accuracy"] == pytest.approx(
        float((names.test.y == majority).float().mean())
    )
    text = opened(registry, "python-docs", characters=20_000)
    assert 3.0 < unigram_bits(text)["test_bits_per_token"] < math.log2(text.vocab_size)


def run(*args):
    return CliRunner().invoke(cli, [*map(str, args)])


def test_a_regression_model_is_timed_like_a_classifier(tmp_path):
    result = run(
        "time",
        "--model",
        "gru",
        "--dataset",
        "wti",
        "--batch-size",
        "16",
        "--quick",
        "--threads",
        "1",
        "--quiet",
        "--out",
        tmp_path / "t",
    )
    assert result.exit_code == 0, result.output
    (record,) = json.loads((tmp_path / "t" / "results.json").read_text())["runs"]
    metrics = record["metrics"]
    assert metrics["task"]["name"] == "regression"
    for mode in ("forward", "forward_backward", "train_step", "epoch"):
        assert metrics[mode]["n"] >= 1 and metrics[mode]["median"] > 0, mode
    assert metrics["flops_per_sample"]["train_step"] > metrics["flops_per_sample"]["forward"] > 0


SEQ_NET = """
from harness import hookimpl
from harness.registry.specs import ModelSpec
from bench_plugins.models.recurrent import OPTIONS, TASKS, builder


def build(input_shape, num_classes, *, data, **options):
    model = builder("gru")(input_shape, num_classes, data=data, **options)
    forward = model.forward
    # this version of the code has a bug: in eval mode it adds a bias to its predictions
    model.forward = lambda x: forward(x) + (0 if model.training else BIAS)
    return model


@hookimpl
def register_models(register):
    register(ModelSpec("seq-net", "a GRU", build, input_shape=(10, 1), num_classes=1,
                       options=OPTIONS, tasks=TASKS))
"""


def test_compare_judges_rmse_lower_is_better_on_real_files(tmp_path):
    """The same configuration trained by two versions of a model's code, one of which biases
    its predictions: its RMSE is higher, a regression; the other way round, an improvement."""
    outs = {}
    for version, bias in (("good", 0.0), ("bad", 0.1)):
        plugin = tmp_path / f"{version}.py"
        plugin.write_text(f"BIAS = {bias}\n" + SEQ_NET)
        outs[version] = tmp_path / version
        args = [
            "--plugin",
            plugin,
            "run",
            "--model",
            "seq-net",
            "--dataset",
            "wti",
            "--epochs",
            "3",
        ]
        args += ["--seed", "0", "--seed", "1", "--threads", "1", "--quiet", "--optimizer", "adam"]
        assert run(*args, "--lr", "0.003", "--out", outs[version]).exit_code == 0
    worse = run("compare", outs["good"], outs["bad"])
    better = run("compare", outs["bad"], outs["good"])

    def line(result):
        return next(
            ln for ln in result.output.splitlines() if "seq-net-wti" in ln and "test_rmse" in ln
        )

    assert worse.exit_code == 1 and "REGRESSION" in line(worse)
    assert better.exit_code == 0 and "improved" in line(better)


def test_sequence_tasks_through_the_accuracy_procedure(tmp_path):
    """One model per task, one epoch, baselines beside it: tables, samples and pictures."""
    suite = tmp_path / "tiny.toml"
    suite.write_text(
        'models = ["rnn"]\n'
        'datasets = ["wti", "surnames", '
        '{ name = "python-docs", options = { characters = 20000 } }]\n'
        'threads = 1\n[train]\nepochs = 1\nbatch_size = 128\noptimizer = "adam"\nlr = 0.003\n'
    )
    result = run("run", "--suite", suite, "--quiet", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    report = (tmp_path / "out" / "report.md").read_text()
    for heading in ("### regression", "### sequence-classification", "### language-model"):
        assert heading in report
    assert "test RMSE (USD/barrel)" in report and "persistence (baseline)" in report
    assert "majority class (baseline)" in report and "bigram (baseline)" in report
    assert "test sequences and predictions" in report and "generated after a prompt" in report
    assert (tmp_path / "out" / "series-wti.png").is_file()
    # each configuration's pictures, from bench run and again from bench report --plots
    drawn = {"confusion-rnn-surnames.png", "loss-rnn-python-docs.png", "loss-rnn-wti.png"}
    assert run("report", tmp_path / "out", "--plots", tmp_path / "plots").exit_code == 0
    for folder in (tmp_path / "out", tmp_path / "plots"):
        names = {path.name for path in (folder / "runs").glob("*.png")}
        assert drawn <= names and "confusion-rnn-wti.png" not in names  # regression has none
    assert "4 PNGs in `runs/`" in report  # confusion for surnames, loss curves for all three


def test_pruning_refuses_other_tasks_before_running(tmp_path):
    result = run(
        "run",
        "--suite",
        "cnn-pruning",
        "--models",
        "mlp",
        "--dataset",
        "wti",
        "--out",
        tmp_path / "p",
    )
    assert result.exit_code == 2
    assert (
        "the pruning procedure needs a classification dataset; 'wti' is for the regression task"
        in result.output
    )


def test_recurrent_models_read_a_signal_as_its_length_in_steps(registry):
    """A (channels, length) classification signal is ``length`` steps of ``channels`` features:
    the model's output is exactly its layers applied to the transposed signal."""
    splits = opened(registry, "mnist1d")
    torch.manual_seed(0)
    model = registry.models.get("gru").create(
        splits.input_shape, splits.num_classes, data=splits.info
    )
    assert model.rnn.input_size == 1 and splits.input_shape == (1, 40)
    signals = splits.test.x[:5]
    with torch.no_grad():
        _, state = model.rnn(signals.transpose(1, 2))  # (5, 40 steps, 1 feature)
        torch.testing.assert_close(model(signals), model.head(state[-1]), rtol=0, atol=0)
        assert model(signals).shape == (5, 10)
    three = registry.models.get("lstm").create((3, 16), 4, data=replace(splits.info, num_outputs=4))
    assert three.rnn.input_size == 3


def test_gru_trains_on_mnist1d_from_the_command_line(tmp_path):
    result = run(
        "run", "--model", "gru", "--dataset", "mnist1d", "--epochs", "1", "--threads", "1",
        "--optimizer", "adam", "--lr", "0.005", "--json", "--quiet", "--out", tmp_path / "g",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (record,) = json.loads((tmp_path / "g" / "results.json").read_text())["runs"]
    assert record["status"] == "ok" and 0 <= record["metrics"]["test_accuracy"] <= 1


@pytest.mark.parametrize(
    "model, dataset, words",
    [
        ("gru", "digits", "it reads (channels, length) inputs or token ids; got input shape"),
        ("lenet5", "surnames", "dataset 'surnames' is for the sequence-classification task"),
        ("lenet5", "wti", "dataset 'wti' is for the regression task (models for it: "),
    ],
)
def test_a_model_that_cannot_take_the_dataset_is_a_usage_error(tmp_path, model, dataset, words):
    """Refused before any run starts (exit 2, nothing written), in one line naming both."""
    result = run("run", "--model", model, "--dataset", dataset, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert f"model '{model}'" in line and dataset in line and words in line
    assert not (tmp_path / "o").exists()
