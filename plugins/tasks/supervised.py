"""The built-in tasks: classification, regression, sequence-classification, language-model.

Each is a :class:`harness.tasks.Task` registered like a plugin's. Classification keeps the exact
arithmetic the harness always used (mean cross-entropy times the batch size while training, a
summed cross-entropy when evaluating), so its numbers do not move.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from harness.tasks import (
    HIGHER,
    LOWER,
    DataInfo,
    Metric,
    Task,
    bits,
    check_same_shape,
    output_shape,
)


def pack(inputs: torch.Tensor):
    """Padded token ids (batch, length), 0 = padding, as a ``PackedSequence`` of ids."""
    lengths = (inputs != 0).sum(1).clamp(min=1).cpu()
    return pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)


SAMPLE_COUNT = 12  # test sequences shown with their predicted class
PROMPT, GENERATED, TEMPERATURE = 40, 240, 0.8  # characters of prompt and of generated text


@torch.inference_mode()
def series_sample(model, splits, device: torch.device) -> dict[str, Any]:
    """The whole test period, actual against predicted, in the data's own units."""
    model.eval()
    x, y = splits.test.x.to(device), splits.test.y.to(device)
    mean, std = splits.target_scale or (0.0, 1.0)
    predicted = model(x) * std + mean
    return {
        "series": {
            "unit": splits.target_unit,
            "actual": [round(v, 4) for v in (y * std + mean).flatten().tolist()],
            "predicted": [round(v, 4) for v in predicted.flatten().tolist()],
        }
    }


@torch.inference_mode()
def prediction_sample(model, splits, device: torch.device) -> dict[str, Any]:
    """The first test sequences, spelt out, with their class and the model's guess."""
    model.eval()
    x, y = splits.test.x[:SAMPLE_COUNT].to(device), splits.test.y[:SAMPLE_COUNT]
    guesses = model(pack(x)).argmax(1).cpu()
    names = splits.class_names or tuple(map(str, range(splits.num_classes)))
    tokens = splits.vocabulary or ()
    return {
        "predictions": [
            {
                "input": "".join(tokens[i] for i in row.tolist() if i)
                if tokens
                else str(row.tolist()),
                "label": names[int(label)],
                "predicted": names[int(guess)],
            }
            for row, label, guess in zip(x.cpu(), y, guesses, strict=True)
        ]
    }


@torch.inference_mode()
def text_sample(model, splits, device: torch.device) -> dict[str, Any]:
    """Characters sampled one at a time (temperature 0.8, a fixed seed) after a prompt taken
    from the start of the test text."""
    model.eval()
    tokens = splits.vocabulary
    if not tokens:
        return {}
    context = splits.test.x[0, :PROMPT].tolist()
    prompt = "".join(tokens[i] for i in context)
    generator = torch.Generator().manual_seed(0)
    window = splits.input_shape[0]
    for _ in range(GENERATED):
        logits = model(torch.tensor([context[-window:]], device=device))[0, -1].float().cpu()
        probabilities = torch.softmax(logits / TEMPERATURE, dim=0)
        probabilities[0] = 0.0  # never padding
        context.append(int(torch.multinomial(probabilities, 1, generator=generator)))
    return {"generated": {"prompt": prompt, "text": "".join(tokens[i] for i in context[PROMPT:])}}


class ClassificationMeter:
    """Loss and accuracy; when evaluating, also the confusion matrix (rows: true class) and the
    balanced accuracy (mean recall over the classes present)."""

    def __init__(self, info: DataInfo, train: bool):
        self.classes, self.train = info.num_outputs, train
        self.loss_sum = self.correct = self.confusion = None
        self.seen = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss=None) -> None:
        logits = outputs.detach()
        if self.loss_sum is None:
            self.loss_sum = torch.zeros((), device=logits.device)
            self.correct = torch.zeros((), device=logits.device, dtype=torch.long)
        if loss is None:
            self.loss_sum += F.cross_entropy(logits, targets, reduction="sum")
        else:
            self.loss_sum += loss.detach() * len(targets)
        predicted = logits.argmax(1)
        self.correct += (predicted == targets).sum()
        if not self.train:
            pairs = torch.bincount(targets * self.classes + predicted, minlength=self.classes**2)
            self.confusion = pairs if self.confusion is None else self.confusion + pairs
        self.seen += len(targets)

    def compute(self) -> dict[str, Any]:
        seen = max(self.seen, 1)
        if self.loss_sum is None:
            return {"loss": math.nan, "accuracy": math.nan}
        result = {"loss": self.loss_sum.item() / seen, "accuracy": self.correct.item() / seen}
        if self.confusion is not None:
            matrix = self.confusion.reshape(self.classes, self.classes).cpu()
            support = matrix.sum(1)
            recall = matrix.diag()[support > 0] / support[support > 0]
            result["balanced_accuracy"] = float(recall.mean()) if len(recall) else math.nan
            result["confusion_matrix"] = matrix.tolist()
        return result


def _check_logits(outputs: Any, targets: torch.Tensor, info: DataInfo) -> str | None:
    if isinstance(outputs, torch.Tensor) and tuple(outputs.shape) == (
        len(targets),
        info.num_outputs,
    ):
        return None
    return f"returns {output_shape(outputs)} per sample; expected ({info.num_outputs},) logits"


def _class_indices(targets: torch.Tensor, count: int, ndim: int, kind: str) -> str | None:
    """What is wrong with ``targets`` as ``ndim``-D ``torch.long`` indices below ``count``."""
    if targets.dtype != torch.long or targets.dim() != ndim:
        return (
            f"targets are a {targets.dtype} tensor of shape {tuple(targets.shape)}; {kind} are "
            f"a {ndim}-D torch.long tensor of indices"
        )
    if targets.numel():
        low, high = (int(v) for v in torch.aminmax(targets))
        if low < 0 or high >= count:
            return (
                f"{kind} run from {low} to {high}, outside the dataset's {count} (0 to {count - 1})"
            )
    return None


def _check_labels(targets: torch.Tensor, info: DataInfo) -> str | None:
    return _class_indices(targets, info.num_outputs, 1, "class labels")


CLASSIFICATION = Task(
    name="classification",
    description="integer class labels; cross-entropy on logits",
    loss=F.cross_entropy,
    meter=ClassificationMeter,
    check=_check_logits,
    metrics=(
        Metric(
            "accuracy", HIGHER, "fraction", "share of samples whose top logit is the label", "acc"
        ),
        Metric(
            "balanced_accuracy", HIGHER, "fraction", "mean recall over the classes", "balanced acc"
        ),
    ),
    headline="accuracy",
    epoch_metrics=("accuracy",),
    expects="(num_classes,) logits per sample",
    check_targets=_check_labels,
)


SEQUENCE_CLASSIFICATION = replace(
    CLASSIFICATION,
    name="sequence-classification",
    description="variable-length token sequences, one class each; the task packs the padded "
    "batch (torch.nn.utils.rnn.PackedSequence of token ids), so models need not know padding",
    prepare=pack,
    expects="(num_classes,) logits per sequence, from a PackedSequence of token ids",
    samples=prediction_sample,
)


class RegressionMeter:
    """Squared and absolute errors in the normalised units the model is trained in, and the
    targets' sums for R²; reported in the data's own units (errors times the target std)."""

    def __init__(self, info: DataInfo, train: bool):
        self.std = info.target_scale[1] if info.target_scale else 1.0
        self.sums = None
        self.n = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss=None) -> None:
        error = outputs.detach() - targets
        batch = torch.stack(
            [error.pow(2).sum(), error.abs().sum(), targets.sum(), targets.pow(2).sum()]
        )
        self.sums = batch if self.sums is None else self.sums + batch
        self.n += targets.numel()

    def compute(self) -> dict[str, Any]:
        if self.sums is None:
            return {"loss": math.nan, "rmse": math.nan, "mae": math.nan, "r2": math.nan}
        sse, sae, total, squares = self.sums.tolist()
        n = max(self.n, 1)
        variance = squares - total**2 / n
        return {
            "loss": sse / n,
            "rmse": math.sqrt(sse / n) * self.std,
            "mae": sae / n * self.std,
            "r2": 1 - sse / variance if variance > 0 else math.nan,
        }


def _check_real(targets: torch.Tensor, info: DataInfo) -> str | None:
    if targets.is_floating_point():
        return None
    return f"targets are a {targets.dtype} tensor; regression targets are floating point"


REGRESSION = Task(
    name="regression",
    description="real-valued targets (stored normalised); mean squared error; RMSE, MAE and R² "
    "reported in the data's own units",
    loss=F.mse_loss,
    meter=RegressionMeter,
    check=check_same_shape,
    metrics=(
        Metric("rmse", LOWER, "target", "root mean squared error", "RMSE"),
        Metric("mae", LOWER, "target", "mean absolute error", "MAE"),
        Metric("r2", HIGHER, "", "coefficient of determination on the split", "R²"),
    ),
    headline="rmse",
    epoch_metrics=("rmse",),
    loss_unit="normalised units²",
    expects="a tensor shaped like the targets (num_targets,) per sample",
    samples=series_sample,
    check_targets=_check_real,
)


def _next_token_loss(outputs: torch.Tensor, targets: torch.Tensor, **kwargs) -> torch.Tensor:
    return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1), **kwargs)


class LanguageModelMeter:
    """Next-token cross-entropy per token (nats), perplexity, bits per token, accuracy."""

    def __init__(self, info: DataInfo, train: bool):
        self.sums = None
        self.tokens = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss=None) -> None:
        logits = outputs.detach()
        count = targets.numel()
        total = (
            _next_token_loss(logits, targets, reduction="sum")
            if loss is None
            else loss.detach() * count
        )
        batch = torch.stack([total, (logits.argmax(-1) == targets).sum().to(total.dtype)])
        self.sums = batch if self.sums is None else self.sums + batch
        self.tokens += count

    def compute(self) -> dict[str, Any]:
        if self.sums is None:
            return {"loss": math.nan}
        total, correct = self.sums.tolist()
        loss = total / max(self.tokens, 1)
        return {
            "loss": loss,
            "bits_per_token": bits(loss),
            "perplexity": math.exp(min(loss, 700.0)),
            "accuracy": correct / max(self.tokens, 1),
        }


def _check_next_token(outputs: Any, targets: torch.Tensor, info: DataInfo) -> str | None:
    if isinstance(outputs, torch.Tensor) and tuple(outputs.shape) == (
        *targets.shape,
        info.num_outputs,
    ):
        return None
    expected = (*targets.shape[1:], info.num_outputs)
    return f"returns {output_shape(outputs)} per sample; expected {expected} logits"


LANGUAGE_MODEL = Task(
    name="language-model",
    description="token sequences; predict each next token; cross-entropy in nats per token",
    loss=_next_token_loss,
    meter=LanguageModelMeter,
    check=_check_next_token,
    metrics=(
        Metric("bits_per_token", LOWER, "bits", "cross-entropy in bits per token", "bits/token"),
        Metric("perplexity", LOWER, "", "exp of the cross-entropy in nats"),
        Metric("accuracy", HIGHER, "fraction", "share of next tokens predicted exactly", "acc"),
    ),
    headline="bits_per_token",
    epoch_metrics=("bits_per_token",),
    expects="(length, vocabulary) logits per sequence",
    samples=text_sample,
    check_targets=lambda targets, info: _class_indices(targets, info.num_outputs, 2, "token ids"),
)

BUILTIN_TASKS = (CLASSIFICATION, REGRESSION, SEQUENCE_CLASSIFICATION, LANGUAGE_MODEL)


def register_tasks(register):
    for task in BUILTIN_TASKS:
        register(task)
