"""Character vocabularies and fixed-length chunks of text, for token datasets."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.data import TensorSplit

PAD, UNKNOWN = "", "\ufffd"


@dataclass(frozen=True)
class CharacterVocabulary:
    """Id 0 is padding, 1 stands for any character not seen when the vocabulary was made."""

    tokens: tuple[str, ...]

    @classmethod
    def of(cls, text: str) -> CharacterVocabulary:
        return cls((PAD, UNKNOWN, *sorted(set(text))))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        index = {token: i for i, token in enumerate(self.tokens)}
        return [index.get(char, 1) for char in text]

    def decode(self, ids) -> str:
        return "".join(self.tokens[int(i)] for i in ids)


def chunks(ids: list[int], length: int) -> TensorSplit:
    """Consecutive, non-overlapping sequences: each ``length`` ids, and the same shifted by one
    as the next-token targets."""
    count = (len(ids) - 1) // length
    data = torch.as_tensor(ids[: count * length + 1], dtype=torch.long)
    x = data[:-1].reshape(count, length)
    y = data[1:].reshape(count, length)
    return TensorSplit(x, y)
