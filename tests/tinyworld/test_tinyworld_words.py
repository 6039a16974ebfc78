"""Made-up words: unique, deterministic, pronounceable, and never words the tiny world already uses."""

from __future__ import annotations

import re

import numpy as np

from flamingo_vlm.tinyworld import is_novel, novel_words, sample_novel_words, vocabulary
from flamingo_vlm.tinyworld._english_words import ENGLISH_WORDS

# Consonant cluster(s) then a vowel, one or two times, optionally a final consonant cluster: "dax",
# "blicket"-like shapes, never two vowels or three consonants in a row.
_PRONOUNCEABLE = re.compile(r"^[bdfgklmnprstvwzx]{1,2}[aeiou](?:[bdfgklmnprstvz][aeiou])?(?:[bdgklmnptxsfc]{1,2})?$")


def test_words_are_unique_and_deterministic():
    words = novel_words(500)
    assert len(set(words)) == 500
    assert words == novel_words(500)
    assert novel_words(100) == words[:100]  # a longer list extends a shorter one
    assert novel_words(100, seed=1) != words[:100]


def test_words_are_short_lowercase_and_pronounceable():
    for w in novel_words(1000):
        assert w.isalpha() and w == w.lower() and 3 <= len(w) <= 7, w
        assert _PRONOUNCEABLE.match(w), w


def test_words_never_collide_with_language_vocabulary_or_english():
    vocab = vocabulary()
    assert {"red", "circle", "left", "how", "many"} <= vocab
    words = set(novel_words(3000))
    assert not words & vocab
    assert not words & ENGLISH_WORDS
    assert not any(is_novel(w) for w in vocab)
    assert not is_novel("dog") and not is_novel("star")


def test_sample_novel_words_gives_distinct_words_per_prompt():
    rng = np.random.default_rng(0)
    prompts = [sample_novel_words(rng, 5) for _ in range(50)]
    assert all(len(set(p)) == 5 for p in prompts)
    assert len({w for p in prompts for w in p}) > 150  # fresh words across prompts
    rng2 = np.random.default_rng(0)
    assert prompts == [sample_novel_words(rng2, 5) for _ in range(50)]
