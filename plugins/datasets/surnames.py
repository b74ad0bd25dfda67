"""Surnames by language of origin, from Faker's per-locale lists, romanised and de-duplicated.

The course's exercise (the PyTorch tutorial's 18 languages) asks to tell a surname's language
by its spelling. Faker ships surname lists for most of them: Chinese and Japanese in its
romanised lists, Greek and Russian transliterated here letter by letter, the rest in the Latin
alphabet; every name is then folded to ASCII (accents dropped: "Wiśniewski" -> "Wisniewski"),
as the tutorial does. Left out: Arabic and Korean (Faker has them only in their own scripts,
which do not transliterate letter by letter) and Scottish (Faker has no Scottish locale). A
surname that occurs in more than one language (after folding) is dropped from all of them, so
that no test label contradicts a training one.
"""

from __future__ import annotations

import importlib
import unicodedata
from functools import lru_cache

import numpy as np

# language -> (Faker locale, the provider's surname lists)
SOURCES = {
    "Chinese": ("zh_CN", ("last_romanized_names",)),
    "Czech": ("cs_CZ", ("last_names_male", "last_names_female")),
    "Dutch": ("nl_NL", ("last_names",)),
    "English": ("en_US", ("last_names",)),
    "French": ("fr_FR", ("last_names",)),
    "German": ("de_DE", ("last_names",)),
    "Greek": ("el_GR", ("last_names",)),
    "Irish": ("ga_IE", ("last_names",)),
    "Italian": ("it_IT", ("last_names",)),
    "Japanese": ("ja_JP", ("last_romanized_names",)),
    "Polish": ("pl_PL", ("male_last_names", "unisex_last_names")),
    "Portuguese": ("pt_PT", ("last_names",)),
    "Russian": ("ru_RU", ("last_names",)),
    "Spanish": ("es_ES", ("last_names",)),
    "Vietnamese": ("vi_VN", ("last_names",)),
}
LANGUAGES = tuple(SOURCES)
LEFT_OUT = {"Arabic": "Arabic script only", "Korean": "Hangul only", "Scottish": "no locale"}

# letter=romanisation pairs; an empty romanisation drops the letter
_CYRILLIC = dict(
    pair.split("=")
    for pair in (  # noqa: SIM905 - a table is easier to check as one string
        "а=a б=b в=v г=g д=d е=e ё=e ж=zh з=z и=i й=y к=k л=l м=m н=n о=o п=p р=r с=s т=t "
        "у=u ф=f х=kh ц=ts ч=ch ш=sh щ=shch ъ= ы=y ь= э=e ю=yu я=ya"
    ).split()
)
_GREEK = dict(
    pair.split("=")
    for pair in (  # noqa: SIM905
        "α=a β=v γ=g δ=d ε=e ζ=z η=i θ=th ι=i κ=k λ=l μ=m ν=n ξ=x ο=o π=p ρ=r σ=s ς=s τ=t "
        "υ=y φ=f χ=ch ψ=ps ω=o"
    ).split()
)


def transliterate(name: str) -> str:
    """Cyrillic and Greek letter by letter (accents first dropped); other letters as they are."""
    letters = []
    for char in unicodedata.normalize("NFD", name):
        lower = char.lower()
        latin = _CYRILLIC.get(lower, _GREEK.get(lower))
        if latin is None:
            letters.append(char)
        elif latin:
            letters.append(latin.capitalize() if char != lower else latin)
    return "".join(letters)


def fold(name: str) -> str:
    """ASCII letters, spaces, apostrophes and hyphens only, accents dropped."""
    decomposed = unicodedata.normalize("NFKD", transliterate(name))
    kept = (c for c in decomposed if c.isascii() and (c.isalpha() or c in " '-"))
    return " ".join("".join(kept).split())


@lru_cache(maxsize=1)
def surnames() -> tuple[list[str], np.ndarray, int]:
    """Every kept surname, its language index (into :data:`LANGUAGES`), and how many names
    were dropped for occurring in several languages."""
    found: dict[str, set[int]] = {}
    for index, (locale, lists) in enumerate(SOURCES.values()):
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attribute in lists:
            for raw in getattr(provider, attribute):
                name = fold(raw)
                if name:
                    found.setdefault(name, set()).add(index)
    kept = sorted((name, next(iter(langs))) for name, langs in found.items() if len(langs) == 1)
    names = [name for name, _ in kept]
    return names, np.array([label for _, label in kept]), len(found) - len(kept)


def longest_surname() -> int:
    return max(len(name) for name in surnames()[0])
