"""Checkpoints and continued training: 5 + 5 epochs are 10 straight, and a checkpoint of another
model, shape, dataset or optimizer is refused with both named."""

import json

import pytest
import torch
from click.testing import CliRunner

from harness.cli import cli
from harness.training.checkpoints import read_checkpoint

# A small model with everything that carries state across epochs: dropout (the global RNG),
# SGD momentum (the optimizer), shuffling and augmentation (their generators).
RUN = [
    "run",
    "--model",
    "mlp",
    "--dataset",
    "digits",
    "--dataset-opt",
    "size=8",
    "--model-opt",
    "hidden=32",
    "--model-opt",
    "dropout=0.2",
    "--augment",
    "affine",
    "--seed",
    "3",
    "--quiet",
]


def bench(*args):
    return CliRunner().invoke(cli, list(args))


def finished(out):
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["status"] == "ok", run["error"]
    return run["metrics"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """3 epochs saved; 3 more from that checkpoint; 6 straight."""
    root = tmp_path_factory.mktemp("checkpoints")
    first, more, straight = root / "first", root / "more", root / "straight"
    assert bench(*RUN, "--epochs", "3", "--save-checkpoint", "--out", str(first)).exit_code == 0
    checkpoint = first / "checkpoints" / "mlp-digits-s3.pt"
    result = bench(
        "run",
        "--from-checkpoint",
        str(checkpoint),
        "--epochs",
        "3",
        "--save-checkpoint",
        "--out",
        str(more),
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert bench(*RUN, "--epochs", "6", "--save-checkpoint", "--out", str(straight)).exit_code == 0
    return checkpoint, more, straight


def test_continued_training_equals_training_straight_through(trained):
    checkpoint, more, straight = trained
    continued, direct = finished(more), finished(straight)
    assert continued["epochs"] == direct["epochs"] == 6
    assert [e["epoch"] for e in continued["history"]] == [1, 2, 3, 4, 5, 6]
    assert continued["history"] == [
        {**e, "seconds": c["seconds"]}
        for e, c in zip(direct["history"], continued["history"], strict=True)
    ]
    assert continued["test_accuracy"] == direct["test_accuracy"]
    a = read_checkpoint(more / "checkpoints" / "mlp-digits-s3.pt")["model_state"]
    b = read_checkpoint(straight / "checkpoints" / "mlp-digits-s3.pt")["model_state"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and it is not trivially equal: 3 epochs alone left other weights
    c = read_checkpoint(checkpoint)["model_state"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_holds_optimizer_and_generator_state(trained):
    checkpoint = read_checkpoint(trained[0])
    assert checkpoint["model"] == "mlp" and checkpoint["seed"] == 3
    training = checkpoint["training"]
    assert training["epochs_done"] == 3
    assert all("momentum_buffer" in s for s in training["optimizer"]["state"].values())
    for key in ("shuffle_rng", "augment_rng", "torch_rng"):
        assert isinstance(training[key], torch.Tensor)


def test_checkpoint_of_another_model_or_dataset_is_refused_naming_both(trained):
    for flag, other in (("--model", "lenet5"), ("--dataset", "mnist1d")):
        result = bench("run", "--from-checkpoint", str(trained[0]), "--epochs", "1", flag, other)
        assert result.exit_code == 2
        assert "model 'mlp'" in result.output and f"'{other}'" in result.output


def test_checkpoint_of_other_options_or_shapes_is_refused_naming_both(trained, tmp_path):
    error = continuing_error(trained[0], tmp_path / "options", "--model-opt", "hidden=16")
    assert "is for model_options {'hidden': (32,)" in error
    assert "this run has model_options {'hidden': (16,)" in error
    # the same options, but the tensors no longer fit (the plugin's model changed, say)
    checkpoint = read_checkpoint(trained[0])
    name = next(iter(checkpoint["model_state"]))
    checkpoint["model_state"][name] = torch.zeros(3, 3)
    torch.save(checkpoint, tmp_path / "changed.pt")
    error = continuing_error(tmp_path / "changed.pt", tmp_path / "shapes")
    assert "does not fit this run's model" in error
    assert f"{name} is (3, 3) in the checkpoint, (32, 64) in the model" in error


def continuing_error(checkpoint, out, *flags):
    """The recorded error of the one run that continues ``checkpoint`` with ``flags``."""
    result = bench(
        "run", "--from-checkpoint", str(checkpoint), "--epochs", "1", *flags, "--out", str(out),
        "--quiet",
    )  # fmt: skip
    assert result.exit_code == 1
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    return run["error"]


def test_a_plain_state_dict_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    result = bench("run", "--from-checkpoint", str(path), "--epochs", "1")
    assert result.exit_code == 2
    assert "is not a bench training checkpoint" in result.output


def test_continuing_needs_epochs_and_no_suite(trained):
    result = bench("run", "--from-checkpoint", str(trained[0]))
    assert result.exit_code == 2 and "needs --epochs N" in result.output
    result = bench(
        "run", "--suite", "quickstart", "--from-checkpoint", str(trained[0]), "--epochs", "1"
    )
    assert result.exit_code == 2 and "without --suite" in result.output


def test_procedures_without_checkpoints_refuse_the_option():
    result = bench("run", "--suite", "cnn-pruning", "--save-checkpoint", "--quick")
    assert result.exit_code == 2
    assert "procedure 'pruning' does not keep training checkpoints" in result.output


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seed", "4"], "is for seed 3 (model 'mlp'"),
        (["--optimizer", "adam"], "with optimizer 'sgd'; its training cannot continue with"),
        (["--lr", "0.5"], "trained with lr 0.01; its training cannot continue with lr 0.5"),
        (["--patience", "3"], "trained with patience 0; its training cannot continue with"),
    ],
)
def test_another_seed_optimizer_setting_or_patience_is_refused(trained, tmp_path, flags, message):
    assert message in continuing_error(trained[0], tmp_path, *flags)


def test_with_early_stopping_continuing_equals_straight_too(tmp_path):
    """Early stopping gives the model its best epoch's weights back; the checkpoint still
    continues from the last epoch's, so the continued run ends as the straight one does."""
    args = [*RUN, "--patience", "50", "--lr", "0.5", "--save-checkpoint"]  # best: epoch 1
    first, more, straight = tmp_path / "first", tmp_path / "more", tmp_path / "straight"
    assert bench(*args, "--epochs", "3", "--out", str(first)).exit_code == 0
    path = first / "checkpoints" / "mlp-digits-s3.pt"
    result = bench("run", "--from-checkpoint", str(path), "--epochs", "3", "--save-checkpoint",
                   "--out", str(more), "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert bench(*args, "--epochs", "6", "--out", str(straight)).exit_code == 0
    continued, direct = finished(more), finished(straight)
    assert continued["test_accuracy"] == direct["test_accuracy"]
    assert continued["best_epoch"] == direct["best_epoch"] < 3  # restored, early in "first"
    a = read_checkpoint(more / "checkpoints" / "mlp-digits-s3.pt")
    b = read_checkpoint(straight / "checkpoints" / "mlp-digits-s3.pt")
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    best_a, best_b = a["training"]["best_weights"], b["training"]["best_weights"]
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    assert not all(torch.equal(best_a[k], a["model_state"][k]) for k in best_a)


def test_a_training_that_early_stopping_ended_is_not_continued(trained, tmp_path):
    checkpoint = read_checkpoint(trained[0])
    checkpoint["training"]["stopped"] = True
    torch.save(checkpoint, tmp_path / "stopped.pt")
    error = continuing_error(tmp_path / "stopped.pt", tmp_path / "out")
    assert "was ended by early stopping at epoch 3" in error


def test_a_suite_file_may_not_continue_a_checkpoint(registry, trained, tmp_path):
    from harness.errors import BenchError
    from harness.execution.runner import run_suite
    from harness.planning.suite_files import parse_suite

    document = {"models": ["mlp"], "datasets": ["digits"], "train": {"from_checkpoint": "x.pt"}}
    suite = parse_suite(document, registry, source="my-suite.toml")
    with pytest.raises(BenchError, match=r"suite file my-suite.toml: from_checkpoint continues"):
        run_suite(suite, registry, out_dir=tmp_path, device="cpu", quiet=True)
    assert not (tmp_path / "results.json").exists()


def test_a_checkpoint_of_a_labelled_subset_is_not_continued_on_the_whole_split(trained, tmp_path):
    checkpoint = read_checkpoint(trained[0])
    checkpoint["train_per_class"] = 10  # as a transfer or augmentation study's run saves it
    torch.save(checkpoint, tmp_path / "subset.pt")
    error = continuing_error(tmp_path / "subset.pt", tmp_path / "out")
    assert "is for train_per_class 10" in error and "trained on a labelled subset" in error
