"""Small helpers around :class:`numpy.random.Generator` shared by the tiny-world modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def choice(rng: np.random.Generator, items: Sequence[T], p: Sequence[float] | None = None) -> T:
    """One element of ``items``, returned as itself.

    ``rng.choice`` on a list would convert enum members to numpy strings and tuples to arrays, so pick an
    index instead. ``p`` (optional) are relative weights; they need not sum to one.
    """
    if not items:
        raise ValueError("cannot choose from an empty sequence")
    if p is None:
        return items[int(rng.integers(len(items)))]
    w = np.asarray(p, dtype=float)
    return items[int(rng.choice(len(items), p=w / w.sum()))]


def shuffled(rng: np.random.Generator, items: Sequence[T]) -> list[T]:
    """A new list with ``items`` in random order."""
    return [items[int(i)] for i in rng.permutation(len(items))]
