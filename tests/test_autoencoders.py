"""mnist-5k, the reconstruction and vae tasks, the autoencoders and the course's VAE, the linear
probe, and the pictures the autoencoders suite draws from stored results."""

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from bench_plugins.datasets.mnist_5k import read_mnist_5k
from bench_plugins.models.autoencoders import VariationalAutoencoder
from bench_plugins.tasks.generative import RECONSTRUCTION, VAE, probe
from click.testing import CliRunner
from sklearn.decomposition import PCA
from torch import nn

from harness.cli import cli
from harness.data import DataContext, Splits, TensorSplit
from harness.tasks import DataInfo

PNG = b"\x89PNG\r\n\x1a\n"


def run(*args):
    return CliRunner().invoke(cli, [*map(str, args)])


def test_mnist_5k_is_the_bundled_file_split_stratified_and_shuffled(registry):
    pixels, labels = read_mnist_5k()
    assert pixels.shape == (5000, 784) and pixels.max() == 255
    assert Counter(labels.tolist()) == dict.fromkeys(range(10), 500)
    assert (labels[:-1] <= labels[1:]).all()  # the file is sorted by label
    spec = registry.datasets.get("mnist-5k")
    splits = spec.open({}, DataContext(seed=0), registry.tasks.get("classification"))
    for split, per_class in ((splits.train, 350), (splits.val, 75), (splits.test, 75)):
        assert Counter(split.y.tolist()) == dict.fromkeys(range(10), per_class)  # stratified
        assert float(split.x.min()) >= 0.0 and float(split.x.max()) == 1.0  # [0, 1] pixels
        assert len(set(split.y[:30].tolist())) > 5  # shuffled, not in the file's order
    rows = [
        {tuple(x.flatten().tolist()) for x in split.x}
        for split in (splits.train, splits.val, splits.test)
    ]
    assert sum(map(len, rows)) == 5000  # no image in two splits, none lost
    other = spec.open({}, DataContext(seed=1))
    assert not torch.equal(other.test.x, splits.test.x)  # the split depends on the seed
    again = spec.open({}, DataContext(seed=0))
    assert torch.equal(again.test.x, splits.test.x) and torch.equal(again.train.y, splits.train.y)


def test_negative_elbo_of_a_hand_computed_case():
    # one image of two pixels; the decoder says 0.5 for both; code mean (1, 0), log variance
    # (0, ln 2): BCE = 2 ln 2, KL = -1/2 [(1 + 0 - 1 - 1) + (1 + ln 2 - 0 - 2)] = 1 - ln 2 / 2
    outputs = (
        torch.tensor([[0.5, 0.5]]),
        torch.tensor([[1.0, 0.0]]),
        torch.tensor([[0, math.log(2)]]),
    )
    targets = torch.tensor([[1.0, 0.0]])
    bce, kl = 2 * math.log(2), 1 - math.log(2) / 2
    assert VAE.loss(outputs, targets).item() == pytest.approx(bce + kl)
    meter = VAE.meter(DataInfo(), False)
    meter.update(outputs, targets)
    meter.update(outputs, targets)  # two images: still per image
    result = meter.compute()
    assert result["neg_elbo"] == pytest.approx(bce + kl)
    assert result["reconstruction"] == pytest.approx(bce) and result["kl"] == pytest.approx(kl)


def test_reconstruction_error_and_psnr():
    meter = RECONSTRUCTION.meter(DataInfo(), False)
    meter.update(torch.full((2, 1, 2, 2), 0.5), torch.zeros(2, 1, 2, 2))  # error 0.5 everywhere
    result = meter.compute()
    assert result["mse"] == pytest.approx(0.25) and result["psnr"] == pytest.approx(6.0206, 1e-4)


def test_the_vae_samples_its_code_with_sigma_exp_half_log_variance():
    """The course fed its log-variance head into the sampling step as a standard deviation; a
    log variance of ln 4 must give codes of standard deviation 2 (not ln 4 = 1.39)."""
    model = VariationalAutoencoder((1, 28, 28), latent=2, hidden=8, dropout=0.0)
    for head, bias in ((model.mean, [3.0, -1.0]), (model.log_var, [math.log(4), 0.0])):
        nn.init.zeros_(head.weight)
        head.bias.data = torch.tensor(bias)
    seen = []
    model.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    torch.manual_seed(0)
    model(torch.zeros(20_000, 1, 28, 28))
    (z,) = seen
    assert z.mean(0).tolist() == pytest.approx([3.0, -1.0], abs=0.05)
    assert z.std(0).tolist() == pytest.approx([2.0, 1.0], abs=0.05)


def test_the_course_vae_has_its_parameter_count(registry):
    counts = {
        name: sum(p.numel() for p in registry.models.get(name).create((1, 28, 28), 10).parameters())
        for name in ("vae", "autoencoder", "conv-autoencoder")
    }
    # vae: 784*100+100 + 100*100+100 + 2*(100*10+10) + BatchNorm 2*10 + 10*100+100 + 100*100+100
    # + 100*784+784
    assert counts == {"vae": 181_024, "autoencoder": 205_856, "conv-autoencoder": 65_025}


class Identity(nn.Module):
    def forward(self, x):
        return x

    def encode(self, x):
        return x


def test_the_linear_probe_reads_separable_codes_perfectly():
    torch.manual_seed(0)
    labels = torch.arange(200) % 2
    codes = torch.randn(200, 2) * 0.3 + torch.stack([labels * 4.0, -labels * 4.0], 1)

    def split(rows):
        return TensorSplit(codes[rows], labels[rows])

    labelled = Splits(split(slice(0, 120)), split(slice(120, 150)), split(slice(150, 200)),
                      input_shape=(2,), num_classes=2)  # fmt: skip
    derived = Splits(labelled.train, labelled.val, labelled.test, (2,), 2, labelled=labelled)
    assert probe(Identity(), derived, torch.device("cpu")) == {"probe_accuracy": 1.0}
    shuffled = Splits(
        TensorSplit(codes[:120], labels[torch.randperm(120)]), labelled.val, labelled.test, (2,), 2
    )
    chance = probe(Identity(), Splits(*[labelled.train] * 3, (2,), 2, labelled=shuffled), "cpu")
    assert chance["probe_accuracy"] < 0.8  # labels the codes do not predict: no better than luck
    assert probe(nn.Identity(), derived, torch.device("cpu")) == {}  # no encode: no probe


@pytest.mark.parametrize(("model", "dataset"), [("vae", "digits"), ("autoencoder", "wti")])
def test_the_generative_tasks_refuse_inputs_that_are_not_pixels(tmp_path, model, dataset):
    """digits is standardised, wti is a standardised price series: neither is [0, 1] pixels,
    which PSNR's peak, the sigmoid outputs and the Bernoulli likelihood assume."""
    result = run("run", "--model", model, "--dataset", dataset, "--epochs", "1", "--out", tmp_path)
    assert result.exit_code == 1
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    (record,) = [r for r in runs if r["config"].get("model") == model]  # wti has baselines too
    assert record["status"] == "failed"
    assert "reconstruct pixel intensities in [0, 1]" in record["error"]
    assert "mnist-5k serves [0, 1] pixels" in record["error"]


TINY = """
models = [
  { name = "autoencoder", label = "ae-2", options = { latent = 2, hidden = 32 } },
  { name = "vae", label = "vae-2", options = { latent = 2, hidden = 32 } },
  { name = "linear-ae" },
]
datasets = ["mnist-5k"]
threads = 1
[train]
epochs = 1
batch_size = 128
optimizer = "adam"
lr = 0.003
"""

LINEAR_AE = """
import math
from torch import nn
from harness import hookimpl
from harness.options import Option
from harness.registry.specs import ModelSpec


class LinearAutoencoder(nn.Module):
    def __init__(self, input_shape, latent):
        super().__init__()
        self.shape = input_shape
        self.down = nn.Linear(math.prod(input_shape), latent)
        self.up = nn.Linear(latent, math.prod(input_shape))

    def encode(self, x):
        return self.down(x.flatten(1))

    def decode(self, z):
        return self.up(z).view(len(z), *self.shape)

    def forward(self, x):
        return self.decode(self.encode(x))


@hookimpl
def register_models(register):
    register(ModelSpec("linear-ae", "one linear layer each way",
                       lambda shape, classes, latent: LinearAutoencoder(shape, latent),
                       options={"latent": Option(3, "code size", "int", minimum=1)},
                       tasks=("reconstruction",)))
"""


def test_the_suite_path_with_a_plugin_model_stores_and_redraws_every_picture(registry, tmp_path):
    plugin = tmp_path / "linear_ae.py"
    plugin.write_text(LINEAR_AE)
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    out = tmp_path / "out"
    result = run("--plugin", plugin, "run", "--suite", suite, "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    runs = {r["config"].get("model_label") or r["config"]["baseline"]: r
            for r in json.loads((out / "results.json").read_text())["runs"]}  # fmt: skip
    assert {name: r["status"] for name, r in runs.items()} == dict.fromkeys(
        ("ae-2", "vae-2", "linear-ae", "pixel logistic regression"), "ok"
    )
    ae, vae, linear = (
        runs["ae-2"]["metrics"],
        runs["vae-2"]["metrics"],
        runs["linear-ae"]["metrics"],
    )
    assert ae["task"]["name"] == linear["task"]["name"] == "reconstruction"
    assert vae["task"]["name"] == "vae"
    assert vae["test_neg_elbo"] == pytest.approx(vae["test_reconstruction"] + vae["test_kl"])
    for metrics in (ae, vae, linear):  # one epoch: well above chance (10%), the plugin's too
        assert 0.15 < metrics["test_probe_accuracy"] <= 1, metrics["test_probe_accuracy"]
    # PCA with as many components as linear-ae's code (3), fitted on seed 0's training split
    splits = registry.datasets.get("mnist-5k").open({}, DataContext(seed=0))
    train, test = splits.train.x.flatten(1).numpy(), splits.test.x.flatten(1).numpy()
    pca = PCA(n_components=3, random_state=0).fit(train)
    expected = float(np.mean((pca.inverse_transform(pca.transform(test)) - test) ** 2))
    assert linear["test_pca_mse"] == pytest.approx(expected, rel=1e-4)
    assert linear["test_pca_mse"] < linear["test_mse"]  # one epoch: PCA is still better
    assert len(vae["samples"]["generated_images"]) == 32
    drawn = {
        "reconstructions-mnist-5k.png",
        "interpolation-mnist-5k.png",
        "generated-vae-2-mnist-5k.png",
        "latent-ae-2-mnist-5k.png",
        "latent-vae-2-mnist-5k.png",
    }
    assert drawn <= {path.name for path in out.glob("*.png")}
    report = (out / "report.md").read_text()
    assert "### reconstruction" in report and "### vae" in report and "-ELBO (nats)" in report
    again = run("--plugin", plugin, "report", out, "--plots", tmp_path / "again")
    assert again.exit_code == 0
    for name in drawn:  # redrawn from the stored samples alone, the same picture
        redrawn = (tmp_path / "again" / name).read_bytes()
        assert redrawn[:8] == PNG and redrawn == (out / name).read_bytes()


def test_a_vae_is_timed_like_a_classifier(tmp_path):
    args = ["time", "--model", "vae", "--dataset", "mnist-5k", "--batch-size", "32", "--quick"]
    result = run(*args, "--threads", "1", "--quiet", "--out", tmp_path / "t")
    assert result.exit_code == 0, result.output
    (record,) = json.loads((tmp_path / "t" / "results.json").read_text())["runs"]
    assert record["metrics"]["task"]["name"] == "vae"
    for mode in ("forward", "forward_backward", "train_step", "epoch"):
        assert record["metrics"][mode]["median"] > 0, mode


def test_compare_reads_each_generative_metrics_direction_from_the_task():
    from harness.comparing.matching import metric_kind
    from harness.comparing.verdicts import ACCURACY, SCORE

    recorded = RECONSTRUCTION.describe()
    assert metric_kind("test_mse", 0.02, recorded) == (SCORE, False)
    assert metric_kind("test_psnr", 17.0, recorded) == (SCORE, True)
    assert metric_kind("test_probe_accuracy", 0.8, recorded) == (ACCURACY, True)
    assert metric_kind("test_kl", 10.0, VAE.describe()) == (SCORE, False)
