"""Every built-in model reproduces the course's architectures: exact parameter and FLOP counts."""

import pytest
import torch

from harness.errors import BenchError
from harness.measuring.flops import count_params, forward_flops
from harness.training.layers import BernoulliDropout

MNIST = (1, 28, 28)

# name, options, input shape, classes, params, forward FLOPs (batch 1) (the course material)
REFERENCE = [
    ("mlp", {}, MNIST, 10, 101_770, 203_264),
    ("mlp", {"hidden": "10"}, MNIST, 10, 7_960, 15_880),
    ("cnn", {}, MNIST, 10, 149_798, 19_950_992),
    ("cnn-small", {}, MNIST, 10, 47_658, 1_012_480),
    ("lenet5", {}, MNIST, 10, 61_706, 833_040),
    ("convnet", {}, MNIST, 10, 300_426, 6_094_208),
    ("resnet18", {}, (3, 224, 224), 10, 11_181_642, None),
    ("resnet18", {}, (3, 224, 224), 1000, 11_689_512, None),
    ("alexnet", {}, (3, 224, 224), 10, 57_044_810, None),
    ("alexnet", {}, (3, 224, 224), 1000, 61_100_840, None),
]


@pytest.mark.parametrize(("name", "options", "shape", "classes", "params", "flops"), REFERENCE)
def test_reference_counts(registry, name, options, shape, classes, params, flops):
    with torch.device("meta"):
        model = registry.models.get(name).create(shape, classes, options)
        assert count_params(model) == params
        if flops is not None:
            assert forward_flops(model, shape) == flops


@pytest.mark.parametrize("name", ["mlp", "cnn", "cnn-small", "lenet5", "convnet"])
def test_small_models_produce_logits(registry, name):
    model = registry.models.get(name).create(MNIST, 10)
    assert model(torch.randn(3, *MNIST)).shape == (3, 10)


@pytest.mark.parametrize("name", ["cnn", "cnn-small", "lenet5", "convnet"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 29, 35), (2, 30, 27)])
def test_conv_models_size_their_first_linear_layer_for_any_image(registry, name, shape):
    model = registry.models.get(name).create(shape, 7, {"width": 0.7})
    assert model(torch.randn(2, *shape)).shape == (2, 7)


def test_an_image_too_small_for_the_convolutions_is_refused_naming_it(registry):
    with pytest.raises(ValueError, match=r"input shape \(1, 8, 8\) is too small.*3x3"):
        registry.models.get("cnn").create((1, 8, 8), 10)


def test_torchvision_models_take_any_channel_count(registry):
    for name in ("resnet18", "alexnet"):
        model = registry.models.get(name).create((1, 64, 64), 7)
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 7)


def test_mlp_hidden_list_builds_several_layers(registry):
    model = registry.models.get("mlp").create((1, 40), 10, {"hidden": "100,100"})
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(40, 100), (100, 100), (100, 10)]


def test_width_scales_hidden_layers_only(registry):
    spec = registry.models.get("lenet5")
    half = spec.create(MNIST, 10, {"width": 0.5})
    convs = [m for m in half if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [3, 8]
    assert half[-1].out_features == 10
    assert count_params(half) < count_params(spec.create(MNIST, 10)) / 2


def test_dropout_option_inserts_chosen_layer(registry):
    spec = registry.models.get("mlp")
    assert not any(isinstance(m, torch.nn.Dropout) for m in spec.create(MNIST, 10))
    model = spec.create(MNIST, 10, {"dropout": 0.3})
    assert [m.p for m in model if isinstance(m, torch.nn.Dropout)] == [0.3]
    model = spec.create(MNIST, 10, {"dropout": 0.3, "dropout_impl": "bernoulli"})
    assert [m.p for m in model if isinstance(m, BernoulliDropout)] == [0.3]


def test_convnet_exposes_its_dropouts(registry):
    model = registry.models.get("convnet").create(MNIST, 10, {"dropout": 0.5, "dropout2d": 0.2})
    assert [m.p for m in model if isinstance(m, torch.nn.Dropout2d)] == [0.2]
    assert [m.p for m in model if type(m) is torch.nn.Dropout] == [0.5]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hidden": "0"}, "must be >= 1"),
        ({"dropout": "1.0"}, "must be < 1"),
        ({"dropout": "abc"}, "could not convert"),
        ({"depth": "3"}, "unknown option 'depth' of model 'mlp'"),
        ({"dropout_impl": "magic"}, "expected one of torch, bernoulli"),
    ],
)
def test_bad_model_options_are_clear(registry, options, message):
    with pytest.raises(BenchError, match=message):
        registry.models.get("mlp").create(MNIST, 10, options)


def test_unknown_option_suggests_closest(registry):
    with pytest.raises(BenchError, match="Did you mean 'hidden'"):
        registry.models.get("mlp").create(MNIST, 10, {"hiden": "3"})


def test_local_weights_load_safely_and_skip_mismatched_head(registry, tmp_path):
    spec = registry.models.get("resnet18")
    source = spec.create((3, 32, 32), 1000)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    model = spec.create((3, 32, 32), 10, {"weights": str(path), "freeze": "true"})
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 10
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]


def test_missing_weights_file_is_an_error(registry, tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        registry.models.get("alexnet").create((3, 64, 64), 10, {"weights": str(tmp_path / "x")})
