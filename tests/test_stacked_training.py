"""Runs trained together as one stacked model give, bit for bit, what each gives alone: its
weights, every epoch's record, its best epoch and early stopping, the step where it diverged.
Everything here runs in one process at one thread, so that alone and stacked use the same kernels.
"""

import math
import random

import pytest
import torch
from torch import nn

from harness.errors import DivergedError
from harness.planning.protocol import RunContext
from harness.planning.train_settings import TrainConfig
from harness.training.layers import BernoulliDropout
from harness.training.loop import seed_everything, train
from harness.training.stacked.model import refusal
from harness.training.stacked.trainer import Member, train_stacked
from harness.training.steps import build_model, open_splits, task_of

EPOCHS = 4


@pytest.fixture(scope="module")
def ctx(registry):
    torch.set_num_threads(1)
    return RunContext(registry=registry, device=torch.device("cpu"))


def member(ctx, seed=0, dropout=0.0, impl="torch", build=None, data="digits", **train) -> Member:
    """A run's model, data and settings as ``train_and_test`` makes them alone."""
    splits = open_splits(ctx, data, {}, seed, "mlp")
    seed_everything(seed)
    if build is None:
        options = {"hidden": [48, 32], "dropout": dropout, "dropout_impl": impl}
        model = build_model(ctx, "mlp", options, splits)
    else:
        model = build(math.prod(splits.input_shape))
    settings = {"epochs": EPOCHS, "batch_size": 64, "lr": 0.05, **train}
    return Member(model, splits, TrainConfig.from_options(settings), seed, torch.get_rng_state())


def alone(ctx, one: Member):
    """Train a copy of ``one`` as ``train`` does, from the same random state."""
    model = _copy(one.model)
    torch.set_rng_state(one.rng_state)
    task = task_of(ctx, one.splits)
    try:
        result = train(model, one.splits, one.config, task=task, device=ctx.device, seed=one.seed)
    except DivergedError as exc:
        return model, exc
    return model, result


def together(ctx, members):
    copies = [Member(_copy(m.model), m.splits, m.config, m.seed, m.rng_state) for m in members]
    results = train_stacked(copies, task=task_of(ctx, members[0].splits), device=ctx.device)
    return [(c.model, r) for c, r in zip(copies, results, strict=True)]


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def assert_same(mine, theirs, label):
    (model_a, a), (model_b, b) = mine, theirs
    assert type(a) is type(b), label
    if isinstance(a, DivergedError):
        assert (a.step, a.epoch, str(a)) == (b.step, b.epoch, str(b)), label
        assert _records(a.history) == _records(b.history), label
        return
    assert _records(a.history) == _records(b.history), label
    assert (a.best_epoch, a.restored) == (b.best_epoch, b.restored), label
    for (name, x), y in zip(
        model_a.state_dict().items(), model_b.state_dict().values(), strict=True
    ):
        assert torch.equal(x.view(torch.int32), y.view(torch.int32)), f"{label}: {name}"


def _records(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


SGD_CELLS = [
    {},
    {"dropout": 0.1},
    {"dropout": 0.5},
    {"dropout": 0.5, "impl": "bernoulli"},
    {"weight_decay": 1e-2},
    {"weight_decay": 1e-2, "weight_decay_mode": "decoupled"},
    {"dropout": 0.25, "weight_decay": 1e-3},
    {"l1": 1e-4},
    {"l2_loss": 1e-3},
    {"l1": 1e-4, "l2_loss": 1e-3},
    {"patience": 1, "lr": 0.05},
    {"seed": 1},
    {"seed": 1, "dropout": 0.25},
    {"seed": 2, "patience": 1},
]
OPTIMIZER_CELLS = [{}, {"dropout": 0.5}, {"weight_decay": 1e-2}, {"seed": 1, "patience": 1}]


@pytest.mark.parametrize(
    "optimizer, cells, shared",
    [
        ("sgd", SGD_CELLS, {"momentum": 0.9}),
        ("sgd", SGD_CELLS[:6], {"momentum": 0.0}),
        (
            "adam",
            OPTIMIZER_CELLS + [{"weight_decay": 1e-2, "weight_decay_mode": "decoupled"}],
            {"lr": 0.01},
        ),
        ("adamw", OPTIMIZER_CELLS, {"lr": 0.01}),
    ],
)
def test_each_member_is_bit_for_bit_its_run_alone_in_a_group_and_a_shuffled_group(
    ctx, optimizer, cells, shared
):
    members = [member(ctx, **{"optimizer": optimizer, **shared, **cell}) for cell in cells]
    lone = [alone(ctx, m) for m in members]
    for k, result in enumerate(together(ctx, members)):
        assert_same(result, lone[k], f"{optimizer} member {k} {cells[k]}")
    order = list(range(len(members)))
    random.Random(0).shuffle(order)
    shuffled = together(ctx, [members[k] for k in order])
    for k, result in zip(order, shuffled, strict=True):
        assert_same(result, lone[k], f"{optimizer} shuffled member {k} {cells[k]}")
    stopped = [r for _, r in lone if len(r.history) < EPOCHS]
    if any(cell.get("patience") for cell in cells):
        assert stopped and all(r.restored for r in stopped)  # early stopping was exercised


def test_a_diverging_member_diverges_at_its_step_and_the_others_go_on_untouched(ctx):
    members = [member(ctx), member(ctx, l2_loss=1e5), member(ctx, dropout=0.5)]
    lone = [alone(ctx, m) for m in members]
    assert isinstance(lone[1][1], DivergedError) and lone[1][1].epoch == 1
    for k, result in enumerate(together(ctx, members)):
        assert_same(result, lone[k], f"member {k}")


def test_a_regression_task_stacks_exactly(ctx):
    cells = [{}, {"dropout": 0.25, "weight_decay": 1e-3}, {"patience": 1, "seed": 1}]
    members = [member(ctx, data="wti", epochs=2, **cell) for cell in cells]
    assert members[0].splits.task == "regression"
    lone = [alone(ctx, m) for m in members]
    for k, result in enumerate(together(ctx, members)):
        assert_same(result, lone[k], f"member {k}")


def plugin_mlp(activation: type[nn.Module], width: int):
    """A model as a plugin might build it: nested Sequentials, bench's BernoulliDropout."""
    return lambda features: nn.Sequential(
        nn.Flatten(),
        nn.Sequential(nn.Linear(features, width), activation(), BernoulliDropout(0.2)),
        nn.Linear(width, width, bias=False),
        activation(),
        nn.Identity(),
        nn.Linear(width, 10),
    )


@pytest.mark.parametrize("activation", [nn.GELU, nn.Tanh, nn.Sigmoid, nn.ReLU])
@pytest.mark.parametrize("width", [37, 64])  # 64 x batch: whole vector blocks; 37 x 17: not
def test_a_plugin_model_of_other_activations_stacks_exactly(ctx, activation, width):
    build = plugin_mlp(activation, width)
    members = [member(ctx, build=build, seed=s, batch_size=17, epochs=2) for s in (0, 1, 0)]
    lone = [alone(ctx, m) for m in members]
    for k, result in enumerate(together(ctx, members)):
        assert_same(result, lone[k], f"{activation.__name__} member {k}")


class OwnForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x) * 2


@pytest.mark.parametrize(
    "model, reason",
    [
        (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), "BatchNorm1d is not supported"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), "Conv2d is not supported"),
        (OwnForward(), "OwnForward is not supported"),
        (nn.Sequential(nn.Linear(4, 4), nn.GELU("tanh")), "GELU(approximate='tanh')"),
        (nn.Sequential(nn.Flatten(2), nn.Linear(4, 4)), "Flatten of other than all"),
        (nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.ReLU(), nn.Dropout(0.3)), None),
    ],
)
def test_a_model_outside_what_stacks_is_refused_with_the_layer_named(model, reason):
    found = refusal(model)
    assert found == reason if reason is None else reason in found
