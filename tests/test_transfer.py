"""The transfer procedure on tiny settings: pretraining once per seed, three strategies, the
pretrained weights loaded safely, and the table and plot."""

import json

import pytest
import torch
from bench_plugins.procedures.transfer.study import head_of, load_backbone

from harness.errors import BenchError
from harness.execution.runner import run_suite
from harness.planning.suite_files import parse_suite
from harness.results.store import load_results

TINY = {
    "procedure": "transfer",
    "models": ["cnn-small"],
    "datasets": [
        {"name": "synthetic", "options": {"shape": "1x28x28", "samples": 200}},
        {"name": "digits", "options": {"normalize": False}},
    ],
    "seeds": [0, 1],
    "train": {"epochs": 1, "batch_size": 16},
    "transfer": {"source": "synthetic", "per_class": [3, 0], "pretrain_epochs": 1},
}


@pytest.fixture(scope="module")
def transferred(registry, tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer")
    suite = parse_suite(TINY, registry, source="test.toml")
    outcome = run_suite(suite, registry, out_dir=out, device="cpu", quiet=True)
    return out, outcome


def test_transfers_need_their_seed_s_pretraining_and_scratch_needs_none(registry):
    suite = parse_suite(TINY, registry, source="t.toml")
    runs = registry.procedures.get("transfer").plan(suite, registry)
    pretrain = {r.config["seed"]: r.index for r in runs if r.config["kind"] == "pretrain"}
    assert sorted(pretrain) == [0, 1]
    for run in runs:
        if run.config["kind"] == "pretrain" or run.config["strategy"] == "scratch":
            assert run.needs == ()
        else:
            assert run.needs == (pretrain[run.config["seed"]],)


def test_pretraining_runs_once_per_seed_before_the_transfers(transferred):
    out, _ = transferred
    runs = load_results(out)["runs"]
    assert all(r["status"] == "ok" for r in runs), [r["error"] for r in runs]
    kinds = [r["config"]["kind"] for r in runs]
    assert kinds[:2] == ["pretrain", "pretrain"] and kinds.count("pretrain") == 2
    assert len(runs) == 2 + 2 * 3 * 2  # per_class x strategies x seeds
    for seed in (0, 1):
        assert (out / "checkpoints" / f"pretrained-cnn-small-synthetic-s{seed}.pt").is_file()


def test_strategies_train_what_they_say_on_the_labelled_subset(transferred, registry):
    out, _ = transferred
    runs = [r for r in load_results(out)["runs"] if r["config"]["kind"] == "transfer"]
    for run in runs:
        metrics, config = run["metrics"], run["config"]
        expected = 30 if config["train_per_class"] == 3 else 1293
        assert metrics["split_sizes"]["train"] == expected
        assert metrics["split_sizes"]["test"] == 360  # the whole target test split
        head = 128 * 10 + 10
        if config["strategy"] == "feature-extraction":
            assert metrics["trainable_params"] == head
        else:
            assert metrics["trainable_params"] == metrics["params"]


def test_fine_tuning_starts_from_the_pretrained_backbone_with_a_new_head(registry, tmp_path):
    spec = registry.models.get("cnn-small")
    torch.manual_seed(0)
    pretrained = spec.create((1, 28, 28), 10)
    path = tmp_path / "p.pt"
    torch.save(pretrained.state_dict(), path)
    torch.manual_seed(1)
    model = spec.create((1, 28, 28), 10)
    head = head_of(model)
    fresh = {k: v.clone() for k, v in head.state_dict().items()}
    head_name = next(name for name, m in model.named_modules() if m is head)
    load_backbone(model, head, path)
    for name, value in model.state_dict().items():
        if name.startswith(f"{head_name}."):  # the head stays new
            assert torch.equal(value, fresh[name.removeprefix(f"{head_name}.")])
            assert not torch.equal(value, pretrained.state_dict()[name])
        else:
            assert torch.equal(value, pretrained.state_dict()[name]), name
    other = spec.create((1, 32, 32), 10)  # a target of another geometry
    with pytest.raises(
        BenchError, match=r"do not fit the model built for the target: .*pretrained"
    ):
        load_backbone(other, head_of(other), path)


def test_report_has_a_row_per_count_a_column_per_strategy_and_a_plot(transferred):
    out, outcome = transferred
    text = outcome.report.markdown
    assert "| model     | labelled/class   | fine-tune %" in text
    assert "| cnn-small | 3 " in text and "| cnn-small | all (129)" in text
    assert "pretrained on synthetic for 1 epoch:" in text
    assert (out / "transfer-cnn-small.png").stat().st_size > 10_000
    (table,) = outcome.report.tables
    assert [row["labelled/class"] for row in table.rows] == ["3", "all (129)"]
    json.dumps(table.rows)


def test_unknown_datasets_and_strategies_are_refused_naming_what_exists(registry):
    procedure = registry.procedures.get("transfer")
    for change, message in (
        ({"source": "mnist5k"}, r"transfer.source.*Did you mean 'mnist-5k'"),
        ({"target": "wti"}, r"transfer.target.*'wti' is regression"),
        ({"strategies": ["finetune"]}, r"transfer.strategies.*fine-tune"),
    ):
        document = {**TINY, "transfer": {**TINY["transfer"], **change}}
        with pytest.raises(BenchError, match=message):
            procedure.plan(parse_suite(document, registry, source="t.toml"), registry)


def test_a_failed_pretraining_skips_its_transfers_with_the_reason(registry, tmp_path):
    document = {**TINY, "seeds": [0], "transfer": {**TINY["transfer"], "per_class": [3]}}
    document["models"] = [{"name": "cnn-small", "train": {"lr": 1e6}}]  # diverges
    run_suite(
        parse_suite(document, registry, source="t.toml"),
        registry,
        out_dir=tmp_path,
        device="cpu",
        quiet=True,
    )
    runs = load_results(tmp_path)["runs"]
    assert runs[0]["status"] == "diverged"
    by_strategy = {r["config"].get("strategy"): r for r in runs}
    for strategy in ("fine-tune", "feature-extraction"):
        record = by_strategy[strategy]
        assert record["status"] == "skipped"
        assert record["error"].startswith(
            f"not run: it needs run {runs[0]['id']}, which is diverged (training loss became"
        )
    assert by_strategy["scratch"]["status"] == "ok"  # it ran (2 steps survive lr 1e6): no needs


def test_the_resnet18_path_runs_through_the_suite_from_a_local_weights_file(tmp_path):
    """The README's ants/bees command, on a tiny image folder and a weights file saved like
    torchvision's (3 channels, 1,000 classes)."""
    import torchvision
    from click.testing import CliRunner
    from test_ondisk_datasets import COLORS, write_image_folder

    from harness.cli import cli

    folder = tmp_path / "hymenoptera_data"
    write_image_folder(folder, {"train": 6, "val": 2})  # 3 classes
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "run", "--suite", "transfer", "--model", "resnet18",
            "--model-opt", f"weights={weights}", "--dataset", "image-folder",
            "--dataset-opt", f"path={folder}", "--dataset-opt", "resize=40",
            "--dataset-opt", "crop=32", "--dataset-opt", "val_fraction=0.5",
            "--set", "source=none", "--set", "target=image-folder",
            "--set", "per_class=2,0", "--seed", "0", "--epochs", "1", "--batch-size", "3",
            "--out", str(out), "--quiet",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    runs = load_results(out)["runs"]
    assert {r["config"]["kind"] for r in runs} == {"transfer"}  # nothing pretrained here
    classes = len(COLORS)
    by_strategy = {(r["config"]["strategy"], r["config"]["train_per_class"]): r for r in runs}
    assert by_strategy[("fine-tune", 2)]["metrics"]["split_sizes"]["train"] == 2 * classes
    extraction = by_strategy[("feature-extraction", 0)]["metrics"]
    assert extraction["trainable_params"] == 512 * classes + classes
    assert by_strategy[("fine-tune", 0)]["metrics"]["trainable_params"] == 11_178_051
    assert "transfer from none to image-folder" in result.output


def test_a_dataset_that_is_neither_source_nor_target_and_a_missing_weights_file_are_refused(
    registry,
):
    procedure = registry.procedures.get("transfer")
    document = {**TINY, "datasets": [*TINY["datasets"], "mnist-5k"]}
    with pytest.raises(BenchError, match=r"'mnist-5k' is neither the source .* --set target="):
        procedure.plan(parse_suite(document, registry, source="t.toml"), registry)
    document = {**TINY, "transfer": {**TINY["transfer"], "source": "none"}}
    document["datasets"] = TINY["datasets"][1:]
    with pytest.raises(BenchError, match=r"source = none starts from the model's own weights"):
        procedure.plan(parse_suite(document, registry, source="t.toml"), registry)


def test_fine_tuning_and_feature_extraction_start_from_the_pretrained_backbone(registry, tmp_path):
    """With a learning rate too small to move a float32 weight, each run's final weights are
    its starting weights: the pretrained backbone (and a new head) for fine-tune and
    feature-extraction, a fresh model for scratch."""
    document = {
        **TINY,
        "seeds": [0],
        "datasets": [  # pretraining learns; the transfer runs on digits cannot move a weight
            TINY["datasets"][0],
            {**TINY["datasets"][1], "train": {"lr": 1e-12, "save_checkpoint": True}},
        ],
        "transfer": {**TINY["transfer"], "per_class": [3]},
    }
    run_suite(parse_suite(document, registry, source="t.toml"), registry, out_dir=tmp_path,
              device="cpu", quiet=True)  # fmt: skip
    pretrained = torch.load(tmp_path / "checkpoints" / "pretrained-cnn-small-synthetic-s0.pt")
    head = [k for k in pretrained if k.startswith("9.")]  # cnn-small's last Linear
    assert head

    def final(strategy):
        path = tmp_path / "checkpoints" / f"cnn-small-digits-{strategy}-3-s0.pt"
        return torch.load(path, weights_only=True)["model_state"]

    for strategy in ("fine-tune", "feature-extraction"):
        weights = final(strategy)
        for key, value in pretrained.items():
            same = torch.allclose(weights[key], value, atol=1e-7)
            assert same != (key in head), (strategy, key)
    scratch = final("scratch")
    assert not any(torch.allclose(scratch[k], v) for k, v in pretrained.items() if "weight" in k)
