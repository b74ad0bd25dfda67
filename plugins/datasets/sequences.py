"""Real sequence data that ships inside installed packages: nothing is downloaded.

- ``wti``: the daily WTI crude-oil spot price (FRED series DCOILWTICO, US dollars per barrel,
  1986-01-02 to 2019-01-03, 8,611 days of which 290 holidays are marked '.'), bundled in the
  ``arch`` package as ``arch/data/wti/wti.csv.gz``. Windows of ``window`` prices predict the
  next one (regression), split chronologically.
- ``surnames``: surnames by language of origin from Faker's per-locale lists (classification
  of variable-length character sequences).
- ``python-docs``: the English text of Python's own documentation topics
  (``pydoc_data.topics``, in the standard library) for next-character prediction.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
from bench_plugins.datasets.baselines import (
    bigram_bits,
    linear_autoregression,
    majority_class,
    persistence,
    unigram_bits,
)
from bench_plugins.datasets.surnames import LANGUAGES, longest_surname, surnames
from bench_plugins.datasets.text import CharacterVocabulary, chunks

from harness.data import DataContext, Splits, TensorSplit
from harness.options import Option
from harness.registry.specs import DatasetSpec


def _package_file(package: str, *parts: str) -> Path | None:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent.joinpath(*parts)


WTI = ("arch", "data", "wti", "wti.csv.gz")


def read_wti() -> tuple[np.ndarray, np.ndarray]:
    """Dates (numpy datetime64[D]) and prices of the trading days (holidays dropped)."""
    path = _package_file(*WTI)
    dates, prices = [], []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        next(handle)  # Date,DCOILWTICO
        for line in handle:
            day, value = line.strip().split(",")
            if value != ".":
                month, date, year = day.split("/")
                dates.append(f"{year}-{int(month):02d}-{int(date):02d}")
                prices.append(float(value))
    return np.array(dates, dtype="datetime64[D]"), np.array(prices, dtype=np.float64)


def load_wti(options: dict, context: DataContext) -> Splits:
    """Windows of ``window`` consecutive trading days predict the next day's price.

    The split is chronological by the day predicted: the first ``1 - val - test`` of the
    windows train, the next ``val`` validate, the most recent ``test`` test; no window of a
    later split predicts a day before one of an earlier split. Prices are standardised with the
    training windows' statistics only (the scale recorded undoes it), so nothing about the
    future leaks into training.
    """
    _, prices = read_wti()
    window = options["window"]
    n_train, n_val, n_test = _wti_counts(len(prices), options)
    count = n_train + n_val + n_test
    inputs = np.lib.stride_tricks.sliding_window_view(prices, window)[:count]
    targets = prices[window:]
    train_values = prices[: n_train + window]  # every price a training window sees or predicts
    mean, std = float(train_values.mean()), float(train_values.std())

    def split(start: int, stop: int) -> TensorSplit:
        x = torch.as_tensor((inputs[start:stop] - mean) / std, dtype=torch.float32)
        y = torch.as_tensor((targets[start:stop] - mean) / std, dtype=torch.float32)
        return TensorSplit(x.unsqueeze(-1), y.unsqueeze(-1))

    return Splits(
        split(0, n_train),
        split(n_train, n_train + n_val),
        split(n_train + n_val, count),
        input_shape=(window, 1),
        num_classes=1,
        target_scale=(mean, std),
        target_unit="USD/barrel",
    )


def _wti_counts(days: int, options: dict) -> tuple[int, int, int]:
    """Windows in the train, validation and test periods."""
    count = days - options["window"]
    n_test = int(round(count * options["test_fraction"]))
    n_val = int(round(count * options["val_fraction"]))
    return count - n_val - n_test, n_val, n_test


def _sizes(counts: tuple[int, int, int]) -> dict[str, int]:
    return dict(zip(("train", "val", "test"), counts, strict=True))


def _wti_sizes(options: dict) -> dict[str, int] | None:
    if _wti_missing(options, DataContext()):
        return None
    return _sizes(_wti_counts(len(read_wti()[1]), options))


def _wti_missing(options: dict, context: DataContext) -> str | None:
    path = _package_file(*WTI)
    if path is None or not path.is_file():
        return (
            "the 'arch' package, which bundles the WTI series, is not installed (pip install arch)"
        )
    return None


def load_surnames(options: dict, context: DataContext) -> Splits:
    """Surnames as padded character ids, stratified train/validation/test splits per seed."""
    names, labels, _ = surnames()
    from sklearn.model_selection import train_test_split

    index = np.arange(len(names))
    rest, test = train_test_split(
        index, test_size=options["test_fraction"], stratify=labels, random_state=context.seed
    )
    train, val = train_test_split(
        rest, test_size=_val_share(options), stratify=labels[rest], random_state=context.seed
    )
    vocabulary = CharacterVocabulary.of("".join(names[i] for i in train))
    width = longest_surname()

    def split(rows: np.ndarray) -> TensorSplit:
        rows = np.sort(rows)
        x = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            ids = vocabulary.encode(names[row])
            x[i, : len(ids)] = torch.as_tensor(ids)
        return TensorSplit(x, torch.as_tensor(labels[rows], dtype=torch.long))

    return Splits(
        split(train),
        split(val),
        split(test),
        input_shape=(width,),
        num_classes=len(LANGUAGES),
        vocab_size=len(vocabulary),
        class_names=tuple(LANGUAGES),
        vocabulary=vocabulary.tokens,
    )


def _val_share(options: dict) -> float:
    """The validation fraction of what the test split leaves, so that it is a share of all."""
    return options["val_fraction"] / (1 - options["test_fraction"])


def _surname_counts(options: dict) -> tuple[int, int, int]:
    """As scikit-learn's ``train_test_split`` rounds: the held-out part up."""
    total = len(surnames()[0])
    test = math.ceil(total * options["test_fraction"])
    val = math.ceil((total - test) * _val_share(options))
    return total - test - val, val, test


def _docs_sections(options: dict) -> tuple[str, str, str]:
    """The text's contiguous train, validation and test sections."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key] for key in sorted(topics))
    text = text[: options["characters"]] if options["characters"] else text
    n_test = int(len(text) * options["test_fraction"])
    n_val = int(len(text) * options["val_fraction"])
    n_train = len(text) - n_val - n_test
    return text[:n_train], text[n_train : n_train + n_val], text[n_train + n_val :]


def _docs_counts(options: dict) -> tuple[int, ...]:
    return tuple((len(section) - 1) // options["length"] for section in _docs_sections(options))


def load_python_docs(options: dict, context: DataContext) -> Splits:
    """Contiguous sections of the text: train, then validation, then test; sequences of
    ``length`` characters predict each next character. The vocabulary is the training section's
    characters (others become one 'unknown' id)."""
    sections = _docs_sections(options)
    vocabulary = CharacterVocabulary.of(sections[0])
    length = options["length"]
    splits = [chunks(vocabulary.encode(section), length) for section in sections]
    return Splits(
        *splits,
        input_shape=(length,),
        num_classes=len(vocabulary),
        vocab_size=len(vocabulary),
        vocabulary=vocabulary.tokens,
    )


FRACTIONS = {
    "val_fraction": Option(
        0.15, "share of the data for validation", "float", minimum=0.01, below=0.5
    ),
    "test_fraction": Option(
        0.15, "share of the data for testing", "float", minimum=0.01, below=0.5
    ),
}


def register_datasets(register):
    register(
        DatasetSpec(
            name="wti",
            description="daily WTI crude-oil spot price, USD/barrel, 1986-2019 (FRED, bundled "
            "with arch): windows of prices predict the next day, chronological splits",
            load=load_wti,
            input_shape=lambda o: (o["window"], 1),
            num_classes=1,
            options={
                "window": Option(10, "days of prices in each input window", "int", minimum=1),
                **FRACTIONS,
            },
            sizes=_wti_sizes,
            unavailable=_wti_missing,
            task="regression",
            baselines={"persistence": persistence, "linear AR": linear_autoregression},
        )
    )
    register(
        DatasetSpec(
            name="surnames",
            description=f"surnames of {len(LANGUAGES)} languages of origin (Faker's locale "
            "lists, romanised): classify each by its spelling",
            load=load_surnames,
            input_shape=lambda o: (longest_surname(),),
            num_classes=len(LANGUAGES),
            options=FRACTIONS,
            sizes=lambda o: _sizes(_surname_counts(o)),
            task="sequence-classification",
            baselines={"majority class": majority_class},
        )
    )
    register(
        DatasetSpec(
            name="python-docs",
            description="English text of Python's documentation topics (pydoc_data.topics, "
            "standard library): predict each next character",
            load=load_python_docs,
            input_shape=lambda o: (o["length"],),
            num_classes=None,
            options={
                "length": Option(64, "characters per training sequence", "int", minimum=2),
                "characters": Option(
                    0, "use only the first N characters of the text (0: all)", "int", minimum=0
                ),
                "val_fraction": Option(
                    0.1, "share of the text for validation", "float", minimum=0.01, below=0.5
                ),
                "test_fraction": Option(
                    0.1, "share of the text for testing", "float", minimum=0.01, below=0.5
                ),
            },
            sizes=lambda o: _sizes(_docs_counts(o)),
            task="language-model",
            baselines={"unigram": unigram_bits, "bigram": bigram_bits},
        )
    )
