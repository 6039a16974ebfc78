"""Pronounceable made-up words ("dax", "wug", "blicket"-like) for the few-shot novel-word task.

In that task an invented name is bound to an object category only by the examples inside one prompt (as in
Frozen's "dax"/"blicket" experiments), so the words must mean nothing in advance: they are never English
words (checked against a built-in list of the English words this generator could form, see
:mod:`._english_words`) and never any word :mod:`.language` writes.

Words are one or two syllables, lowercase, 3 to 7 letters, built from simple English-like syllables.
"""

from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np

from ._english_words import ENGLISH_WORDS
from ._random import choice
from .language import vocabulary

__all__ = ["is_novel", "novel_word", "novel_words", "sample_novel_words"]

# Syllable parts. "c", "q", "y", "h" and most vowel digraphs are left out: their pronunciation is
# ambiguous from spelling, and the point is that a word can be read aloud one way.
_ONSETS = (
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "z",
    "bl",
    "br",
    "dr",
    "fl",
    "fr",
    "gl",
    "gr",
    "kl",
    "pl",
    "pr",
    "sk",
    "sl",
    "sn",
    "sp",
    "st",
    "tr",
    "zw",
)
_MEDIAL_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("b", "d", "g", "k", "l", "m", "n", "p", "t", "x", "ck", "sk", "nt", "mp", "ft")
# Two-syllable words end in a single consonant, or a vowel: "blicket"-like, not "slizask".
_SIMPLE_CODAS = ("b", "d", "g", "k", "l", "m", "n", "p", "t", "x", "ck")
_FINAL_OPEN = ("a", "o", "i")  # two-syllable words may also end in a vowel: "toma", "zibo"


# Letter sequences that read as profanity or slurs when sounded out; any word containing one is dropped
# (over-blocking a few harmless words costs nothing).
_UNWANTED_PARTS = (
    "anus",
    "dick",
    "dik",
    "fag",
    "fack",
    "fak",
    "feck",
    "fock",
    "fok",
    "fuck",
    "fuk",
    "kak",
    "kik",
    "klit",
    "kock",
    "kok",
    "kox",
    "kum",
    "kunt",
    "nig",
    "nob",
    "penis",
    "piss",
    "porn",
    "puta",
    "puto",
    "rape",
    "sek",
    "sex",
    "slut",
    "spik",
    "suk",
    "tit",
    "nazi",
)


def _syllable_forms():
    """All words the generator can form, as a generator (used to build the English blocklist)."""
    for o in _ONSETS:
        for v in _VOWELS:
            for c in _CODAS:
                yield o + v + c
    for o in _ONSETS:
        for v in _VOWELS:
            for m in _MEDIAL_ONSETS:
                for v2 in _VOWELS:
                    for c in (*_SIMPLE_CODAS, ""):
                        w = o + v + m + v2 + c
                        if c == "" and v2 not in _FINAL_OPEN:
                            continue
                        yield w


def _draw(rng: np.random.Generator) -> str:
    """One candidate word (may still be English or taken; see :func:`is_novel`)."""
    first = choice(rng, _ONSETS) + choice(rng, _VOWELS)
    if rng.random() < 0.5:
        return first + choice(rng, _CODAS)
    second = choice(rng, _MEDIAL_ONSETS) + choice(rng, _VOWELS)
    if second[-1] in _FINAL_OPEN and rng.random() < 0.3:
        return first + second
    return first + second + choice(rng, _SIMPLE_CODAS)


@lru_cache(maxsize=1)
def _forbidden() -> frozenset[str]:
    return frozenset(ENGLISH_WORDS) | vocabulary()


def is_novel(word: str) -> bool:
    """True if ``word`` is not a known English word, not a word :mod:`.language` uses, and not rude."""
    return word not in _forbidden() and not any(part in word for part in _UNWANTED_PARTS)


def novel_word(rng: np.random.Generator) -> str:
    """One made-up word drawn with ``rng``."""
    while True:
        w = _draw(rng)
        if is_novel(w):
            return w


def sample_novel_words(rng: np.random.Generator, k: int) -> list[str]:
    """``k`` distinct made-up words drawn with ``rng`` (e.g. fresh names for the categories of one prompt)."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < k:
        w = novel_word(rng)
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def novel_words(n: int, seed: int = 0) -> list[str]:
    """A fixed list of ``n`` distinct made-up words: the same ``(n, seed)`` always gives the same list, and a
    longer list extends a shorter one with the same seed."""
    return sample_novel_words(np.random.default_rng(seed), n)


def _build_blocklist(dictionaries: list[str]) -> list[str]:
    """English words (from word-list files, one word a line) that the generator could form."""
    english: set[str] = set()
    for path in dictionaries:
        with open(path, encoding="utf-8", errors="ignore") as f:
            english.update(line.strip().lower() for line in f)
    return sorted(set(_syllable_forms()) & english)


if __name__ == "__main__":  # pragma: no cover - developer tool
    # Regenerate _english_words.py:
    #   python -m flamingo_vlm.tinyworld.words /usr/share/dict/american-english /usr/share/dict/british-english
    words = _build_blocklist(sys.argv[1:])
    lines = [
        '"""English words that :mod:`.words` could generate by chance, and so must never produce.',
        "",
        "Generated by ``python -m flamingo_vlm.tinyworld.words <word lists>`` from Debian's wamerican and",
        "wbritish lists (proper nouns included, lowercased); regenerate it if the syllable tables change.",
        '"""',
        "",
        "ENGLISH_WORDS: frozenset[str] = frozenset(",
        '    """',
    ]
    for i in range(0, len(words), 12):
        lines.append("    " + " ".join(words[i : i + 12]))
    lines += ['    """.split()', ")", ""]
    print("\n".join(lines), end="")
