"""``rnn``, ``lstm`` and ``gru``: PyTorch's own recurrent layers, for regression over windows of
values, classification of variable-length token sequences, and language modelling.

One model serves the three tasks; what it returns follows the dataset's task
(:class:`harness.tasks.DataInfo`): the last step's hidden state through a linear head (one value
per target, or one logit per class), or every step's (next-token logits). Token inputs (a
dataset with a ``vocab_size``) go through an embedding first; packed sequences
(``sequence-classification`` packs its batches) stay packed through the recurrent layer, and the
final hidden state of each sequence is its own last real step, not a padding step.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.rnn import PackedSequence

from harness.options import Option
from harness.registry.specs import ModelSpec
from harness.tasks import DataInfo

LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
TASKS = ("regression", "sequence-classification", "language-model")
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
        features = embedding if self.embed is not None else data.input_shape[-1]
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
        outputs, state = self.rnn(x)
        if self.every_step:
            return self.head(outputs)
        return self.head(_last_layer(state))


def _last_layer(state):
    """The top layer's final hidden state (an LSTM's state is (hidden, cell))."""
    hidden = state[0] if isinstance(state, tuple) else state
    return hidden[-1]


def builder(kind: str):
    def build(input_shape, num_classes, *, data, hidden, layers, dropout, embedding):
        if data.vocab_size is None and len(input_shape) != 2:
            raise ValueError(
                f"expects sequences of feature vectors (length, features) or token ids; "
                f"got input shape {tuple(input_shape)}"
            )
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
                accepts="(length, features) windows, or token sequences",
                options=OPTIONS,
                num_classes=LISTED.num_outputs,
                tasks=TASKS,
                example=LISTED,
            )
        )
