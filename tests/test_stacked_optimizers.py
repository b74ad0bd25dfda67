"""StackedOptimizer: every member's slice of a stacked Linear weight and bias, stepped 200 times
with random gradients, stays bit for bit (compared as int32 bits, so even the sign of a zero
counts) what make_optimizer's torch optimizer makes of that member's own ``nn.Linear``, and so do
the optimizer's buffers."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from harness.planning.train_settings import TrainConfig
from harness.training.loop import make_optimizer
from harness.training.stacked.optimizers import MemberSettings, StackedOptimizer

K, IN, OUT, STEPS, LR = 5, 13, 7, 200, 0.05
# Gradients this close to 0 become -0.0: torch adds no coupled decay to a member without it,
# which keeps such a gradient -0.0 (adding w * 0 makes it +0.0 where w > 0).
ZERO_BELOW = 0.02

MEMBERS = {
    "mixed": [
        MemberSettings(0.0),
        MemberSettings(1e-4),
        MemberSettings(1e-2),
        MemberSettings(1e-4, decoupled=True),
        MemberSettings(1e-2, decoupled=True),
    ],
    "all-coupled": [MemberSettings(wd) for wd in (1e-2, 1e-4, 1e-2, 1e-4, 1e-2)],
}
OPTIMIZERS = {  # kind, momentum, nesterov
    "sgd": ("sgd", 0.0, False),
    "sgd-momentum": ("sgd", 0.9, False),
    "sgd-nesterov": ("sgd", 0.9, True),
    "adam": ("adam", 0.0, False),
    "adamw": ("adamw", 0.0, False),  # decoupled whatever the members say
}
# Every optimizer with mixed members, and once with every member coupled (no torch.where then).
CASES = [(optimizer, "mixed") for optimizer in OPTIMIZERS] + [("sgd-momentum", "all-coupled")]


def signed_zeros(values: Tensor) -> Tensor:
    values[values.abs() < ZERO_BELOW] = -0.0
    return values


def gradient(shape: tuple[int, ...], generator: torch.Generator, missing: bool) -> Tensor | None:
    return None if missing else signed_zeros(torch.randn(shape, generator=generator))


def lone_member(
    kind: str, momentum: float, nesterov: bool, member: MemberSettings, weight: Tensor, bias: Tensor
) -> tuple[nn.Linear, torch.optim.Optimizer]:
    """The member as a run trains it: its own Linear, stepped by make_optimizer's optimizer."""
    model = nn.Linear(IN, OUT)
    with torch.no_grad():
        model.weight.copy_(weight)
        model.bias.copy_(bias.reshape(OUT))
    mode = "decoupled" if member.decoupled else "coupled"
    config = TrainConfig.from_options(
        {
            "optimizer": kind,
            "lr": LR,
            "momentum": momentum,
            "weight_decay": member.weight_decay,
            "weight_decay_mode": mode,
        }
    )
    optimizer = make_optimizer(model, config)
    for group in optimizer.param_groups:  # make_optimizer has no nesterov option: torch reads
        group["nesterov"] = nesterov  # the flag at each step
    return model, optimizer


def assert_bitwise(stacked: Tensor, alone: list[Tensor], what: str, step: int) -> None:
    together = torch.stack([t.reshape(stacked.shape[1:]) for t in alone])
    if not torch.equal(stacked.view(torch.int32), together.view(torch.int32)):
        difference = (stacked - together).abs().max().item()
        pytest.fail(f"{what} after step {step}: not bitwise equal, max |difference| {difference}")


def assert_state_matches(mine: dict, theirs: list[dict], what: str, step: int) -> None:
    assert set(mine) == set(theirs[0]), what
    for key in mine:
        if key == "step":
            assert all(float(state["step"]) == mine["step"] for state in theirs), what
        else:
            assert_bitwise(mine[key], [state[key] for state in theirs], f"{what} {key}", step)


def assert_members_match(
    stacked: StackedOptimizer, params: dict[str, Tensor], alone: list, step: int
) -> None:
    """Each stacked param and its state against the lone models' param of that name."""
    for name, param in params.items():
        theirs = [getattr(model, name) for model, _ in alone]
        assert_bitwise(param.detach(), [p.detach() for p in theirs], name, step)
        states = [optimizer.state[p] for p, (_, optimizer) in zip(theirs, alone, strict=True)]
        assert_state_matches(stacked.state.get(param, {}), states, name, step)


@pytest.mark.parametrize("optimizer, members", CASES)
def test_each_member_steps_bitwise_as_alone(optimizer: str, members: str):
    kind, momentum, nesterov = OPTIMIZERS[optimizer]
    settings = MEMBERS[members]
    generator = torch.Generator().manual_seed(0)
    weight = signed_zeros(torch.randn(K, OUT, IN, generator=generator)).requires_grad_()
    bias = signed_zeros(torch.randn(K, 1, OUT, generator=generator)).requires_grad_()
    alone = [
        lone_member(kind, momentum, nesterov, s, weight[k].detach(), bias[k].detach())
        for k, s in enumerate(settings)
    ]
    stacked = StackedOptimizer(
        kind, [weight, bias], [True, False], settings, lr=LR, momentum=momentum, nesterov=nesterov
    )
    for step in range(1, STEPS + 1):
        # now and then a param has no gradient: torch skips it, but the decoupled hook shrinks it
        weight_grad = gradient((K, OUT, IN), generator, missing=step % 11 == 0)
        bias_grad = gradient((K, 1, OUT), generator, missing=step % 7 == 0)
        stacked.zero_grad()
        weight.grad, bias.grad = weight_grad, bias_grad
        stacked.step()
        for k, (model, optimizer_alone) in enumerate(alone):
            model.weight.grad = None if weight_grad is None else weight_grad[k].clone()
            model.bias.grad = None if bias_grad is None else bias_grad[k, 0].clone()
            optimizer_alone.step()
        assert_members_match(stacked, {"weight": weight, "bias": bias}, alone, step)


@pytest.mark.parametrize(
    "kind, decayed, members, nesterov, message",
    [
        ("rmsprop", [True], [MemberSettings()] * K, False, "known: sgd, adam, adamw"),
        ("sgd", [True, False], [MemberSettings()] * K, False, "2 decayed flags for 1"),
        ("sgd", [True], [MemberSettings()] * 4, False, "do not have 4 members"),
        ("sgd", [True], [MemberSettings()] * K, True, "Nesterov momentum requires a momentum"),
    ],
)
def test_bad_setup_is_refused_in_one_line(kind, decayed, members, nesterov, message):
    weight = torch.zeros(K, OUT, IN, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        StackedOptimizer(kind, [weight], decayed, members, lr=LR, nesterov=nesterov)


def test_zero_grad_sets_every_gradient_to_none():
    params = [
        torch.zeros(K, OUT, IN, requires_grad=True),
        torch.zeros(K, 1, OUT, requires_grad=True),
    ]
    optimizer = StackedOptimizer("sgd", params, [True, False], [MemberSettings()] * K, lr=LR)
    for param in params:
        param.grad = torch.ones_like(param)
    optimizer.zero_grad()
    assert all(param.grad is None for param in params)
