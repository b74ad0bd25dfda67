"""Random affine augmentation on the device, and the augmentation study of the regularization
procedure with its measured throughput cost."""

import pytest
import torch

from harness.data import TensorSplit, labelled_subset
from harness.errors import BenchError
from harness.execution.runner import run_suite
from harness.planning.suite_files import parse_suite
from harness.results.store import load_results
from harness.training.augmentation import Affine, augmentation_generator, make_augmenter

IMAGES = torch.rand(8, 1, 12, 12)


def test_affine_with_no_range_is_the_identity():
    still = Affine(0.0, 0.0, 0.0)(IMAGES, torch.Generator().manual_seed(0))
    assert torch.allclose(still, IMAGES, atol=1e-5)


def test_affine_moves_each_image_differently_and_repeats_per_seed():
    affine = Affine(15.0, 0.1, 0.1)
    a = affine(IMAGES, torch.Generator().manual_seed(0))
    b = affine(IMAGES, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert not torch.allclose(a, IMAGES, atol=1e-2)
    assert a.shape == IMAGES.shape
    # each sample draws its own matrix
    matrices = affine.matrices(8, torch.Generator().manual_seed(1))
    assert len({tuple(m.flatten().tolist()) for m in matrices}) == 8


def test_the_ranges_mean_what_they_say(monkeypatch):
    """translate=0.25 shifts by a quarter of the side (u = 1 draws the largest shift, on both
    axes); degrees=90 turns by a quarter turn; scale=0.5 enlarges 1.5 times."""
    monkeypatch.setattr(torch, "rand", lambda *shape, generator=None: torch.ones(*shape))
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 4, 4] = 1.0
    shifted = Affine(0.0, 0.25, 0.0)(image, torch.Generator())
    assert shifted[0, 0, 2, 2] == 1.0 and shifted.sum() == 1.0  # 2 of 8 pixels up and left
    turned = Affine(90.0, 0.0, 0.0)(image, torch.Generator())
    assert torch.allclose(turned, torch.rot90(image, 1, dims=(2, 3)), atol=1e-5)
    zoomed = Affine(0.0, 0.0, 0.5).matrices(1, torch.Generator())
    assert torch.allclose(zoomed[0, :, :2], torch.eye(2) / 1.5)  # 1.5x larger


def test_augmentation_refuses_inputs_that_are_not_images():
    with pytest.raises(BenchError, match=r"needs image inputs .* shape \(1, 40\)"):
        make_augmenter("affine", Affine(10, 0.1, 0.1), (1, 40), augmentation_generator(0))
    assert make_augmenter("none", Affine(10, 0.1, 0.1), (1, 40), augmentation_generator(0)) is None


def test_labelled_subsets_are_per_class_and_nested():
    y = torch.arange(100) % 4
    split = TensorSplit(torch.arange(100).float().unsqueeze(1), y)
    five, ten = labelled_subset(split, 5, seed=3), labelled_subset(split, 10, seed=3)
    assert torch.bincount(five.y).tolist() == [5, 5, 5, 5]
    assert set(five.x.flatten().tolist()) <= set(ten.x.flatten().tolist())
    assert labelled_subset(split, 5, seed=4).x.flatten().tolist() != five.x.flatten().tolist()


STUDY = {
    "procedure": "regularization",
    "models": [{"name": "cnn-small", "options": {}}],
    "datasets": [{"name": "digits", "options": {"normalize": False}}],
    "seeds": [0],
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.02},
    "regularization": {
        "dropouts": [0],
        "weight_decays": [0, 1e-3],
        "l1": [0],
        "l2": 0,
        "compare_dropout": 0,
        "patience": 0,
        "augment": "affine",
        "train_per_class": 8,
    },
}


def test_the_augmentation_study_trains_each_cell_both_ways_and_reports_the_cost(registry, tmp_path):
    suite = parse_suite(STUDY, registry, source="test.toml")
    outcome = run_suite(suite, registry, out_dir=tmp_path, device="cpu", quiet=True)
    runs = load_results(tmp_path)["runs"]
    assert [r["status"] for r in runs] == ["ok"] * 4
    assert sorted(r["config"]["train"]["augment"] for r in runs) == [
        "affine",
        "affine",
        "none",
        "none",
    ]
    for run in runs:
        assert run["metrics"]["split_sizes"]["train"] == 80  # 8 of each of 10 classes
        cost = run["metrics"].get("augmentation_cost")
        assert (cost is not None) == (run["config"]["train"]["augment"] == "affine")
        if cost:
            assert cost["plain_pass_s"] > 0 and cost["augmented_pass_s"] > 0
            assert cost["ratio"] == cost["augmented_pass_s"] / cost["plain_pass_s"]
    text = outcome.report.markdown
    assert "#### Augmentation: each grid cell without and with" in text
    assert "**Augmentation cost**: a training pass over 80 samples took" in text
    assert "| wd=0.001,affine " in text


def test_augmentation_is_the_study_s_to_set(registry):
    document = {**STUDY, "train": {**STUDY["train"], "augment": "affine"}}
    with pytest.raises(BenchError, match="train.augment"):
        registry.procedures.get("regularization").plan(
            parse_suite(document, registry, source="test.toml"), registry
        )


def test_augmented_training_differs_and_repeats(registry, tmp_path):
    from click.testing import CliRunner

    from harness.cli import cli

    args = [
        "run",
        "--model",
        "cnn-small",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--quiet",
        "--json",
    ]
    results = []
    for name, extra in (("a", ["--augment", "affine"]), ("b", ["--augment", "affine"]), ("c", [])):
        out = tmp_path / name
        assert CliRunner().invoke(cli, [*args, *extra, "--out", str(out)]).exit_code == 0
        (run,) = load_results(out)["runs"]
        results.append(run["metrics"]["history"][0]["train_loss"])
    assert results[0] == results[1] != results[2]
    bad = CliRunner().invoke(
        cli,
        [
            "run",
            "--model",
            "mlp",
            "--dataset",
            "mnist1d",
            "--epochs",
            "1",
            "--augment",
            "affine",
            "--out",
            str(tmp_path / "d"),
        ],
    )
    assert bad.exit_code == 1
    (run,) = load_results(tmp_path / "d")["runs"]
    assert "needs image inputs" in run["error"]
    reconstruction = CliRunner().invoke(
        cli,
        ["run", "--model", "autoencoder", "--dataset", "digits", "--dataset-opt",
         "normalize=false", "--epochs", "1", "--augment", "affine", "--out", str(tmp_path / "e")],
    )  # fmt: skip
    assert reconstruction.exit_code == 1
    (run,) = load_results(tmp_path / "e")["runs"]
    assert "would change the inputs but not the targets" in run["error"]
