"""``rnn``, ``lstm`` and ``gru``: PyTorch's own recurrent layers, for regression over windows of
values, classification of 1-D signals and of variable-length token sequences, and language
modelling.

One model serves the four tasks; what it returns follows the dataset's task
(:class:`harness.tasks.DataInfo`): the last step's hidden state through a linear head (one value
per target, or one logit per class), or every step's (next-token logits). Token inputs (a
dataset with a ``vocab_size``) go through an embedding first; packed sequences
(``sequence-classification`` packs its batches) stay packed through the recurrent layer, and the
final hidden state of each sequence is its own last real step, not a padding step.

The two layouts of real-valued inputs follow their datasets' conventions: a regression window is
``(length, features)``, a classification signal (``mnist1d``) is ``(channels, length)`` as a
``Conv1d`` reads it, and is read as ``length`` steps of ``channels`` features, the way the
MNIST-1D paper's GRU reads its 40 values as 40 steps.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn
from torch.nn.utils.rnn import PackedSequence

from harness.options import Option
from harness.registry.specs import ModelSpec
from harness.tasks import DataInfo

LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
TOKEN_TASKS = ("sequence-classification", "language-model")
TASKS = ("regression", "classification", *TOKEN_TASKS)
# The listing's geometry: windows of 10 daily prices, one price to predict (the course's lab)
LISTED = DataInfo(task="regression", input_shape=(10, 1), num_outputs=1)


class Recurrent(nn.Module):
    def __init__(
        self,
        kind: str,
        data: DataInfo,
        hidden: int,
        layers: int,
        dropout: float,
        embedding: int,
    ):
        super().__init__()
        self.embed = (
            nn.Embedding(data.vocab_size, embedding, padding_idx=0) if data.vocab_size else None
        )
        # A classification signal is (channels, length): steps run along its last dimension.
        self.signal = data.task == "classification"
        features = embedding if self.embed is not None else data.input_shape[-1]
        if self.signal:
            features = data.input_shape[0]
        self.rnn = LAYERS[kind](
            features,
            hidden,
            num_layers=layers,
            dropout=dropout if layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(hidden, data.num_outputs)
        self.every_step = data.task == "language-model"

    def forward(self, x):
        if isinstance(x, PackedSequence):
            if self.embed is not None:
                x = x._replace(data=self.embed(x.data))
            _, state = self.rnn(x)
            return self.head(_last_layer(state))
        if self.embed is not None:
            x = self.embed(x)
        elif self.signal:
            x = x.transpose(1, 2)
        outputs, state = self.rnn(x)
        if self.every_step:
            return self.head(outputs)
        return self.head(_last_layer(state))


def _last_layer(state):
    """The top layer's final hidden state (an LSTM's state is (hidden, cell))."""
    hidden = state[0] if isinstance(state, tuple) else state
    return hidden[-1]


def misfit(data: DataInfo) -> str | None:
    """Why the model cannot read ``data``'s real-valued inputs, known from the dataset's
    description (which leaves out the vocabulary: token tasks are not judged here)."""
    tokens = data.vocab_size is not None or data.task in TOKEN_TASKS
    if not tokens and len(data.input_shape) != 2:
        layout = "(channels, length)" if data.task == "classification" else "(length, features)"
        return f"reads {layout} inputs or token ids; got input shape {tuple(data.input_shape)}"
    return None


def builder(kind: str):
    def build(input_shape, num_classes, *, data, hidden, layers, dropout, embedding):
        data = replace(data, input_shape=tuple(input_shape))
        problem = misfit(data)
        if problem:
            raise ValueError(problem)
        return Recurrent(kind, data, hidden, layers, dropout, embedding)

    return build


OPTIONS = {
    "hidden": Option(64, "hidden units of each recurrent layer", "int", minimum=1),
    "layers": Option(1, "stacked recurrent layers", "int", minimum=1),
    "dropout": Option(0.0, "dropout between stacked layers", "float", minimum=0.0, below=1.0),
    "embedding": Option(32, "embedding size for token inputs", "int", minimum=1),
}

DESCRIPTIONS = {
    "rnn": "Elman RNN (tanh) over the sequence, then a linear head",
    "lstm": "LSTM over the sequence, then a linear head",
    "gru": "GRU over the sequence, then a linear head",
}


def register_models(register):
    for kind, description in DESCRIPTIONS.items():
        register(
            ModelSpec(
                name=kind,
                description=description,
                build=builder(kind),
                input_shape=LISTED.input_shape,
                accepts="(length, features) windows, (channels, length) signals, token ids",
                options=OPTIONS,
                num_classes=LISTED.num_outputs,
                tasks=TASKS,
                example=LISTED,
                misfit=misfit,
            )
        )
