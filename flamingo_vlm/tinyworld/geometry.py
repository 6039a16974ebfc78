"""Geometry of the tiny world: shape outlines, object masks and extents, spatial relations, grid positions.

Kept apart from rendering so that scene sampling (overlap checks) and language (relations, positions) can use
the same geometry without depending on how pixels are painted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

from .scene import SceneObject, Shape, Size

__all__ = [
    "CLEAR_SEPARATION",
    "POSITION_MARGIN",
    "POSITION_NAMES",
    "Relation",
    "clear_relations",
    "draw_object",
    "object_extent",
    "object_mask",
    "position_cell",
    "position_is_clear",
    "position_name",
    "relation_truth",
    "touching",
    "unit_outline",
    "visible_fractions",
]


def _centroid(points: np.ndarray) -> np.ndarray:
    """Area centroid of a simple polygon (shoelace formula)."""
    x, y = points[:, 0], points[:, 1]
    xs, ys = np.roll(x, -1), np.roll(y, -1)
    cross = x * ys - xs * y
    area = cross.sum() / 2.0
    return np.array([((x + xs) * cross).sum(), ((y + ys) * cross).sum()]) / (6.0 * area)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    # inner/outer 0.45 keeps the arms thick enough to survive downsampling of a small star.
    angles = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _heart(n: int = 48) -> np.ndarray:
    # The classic parametric heart, y flipped into image coordinates, scaled to a half-width of 1.
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1) / 16.0
    return pts


def _circle(n: int = 64) -> np.ndarray:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _make_outlines() -> dict[Shape, np.ndarray]:
    """Unit outlines (half-extent about 1), each shifted so that its area centroid is at the origin.

    Centring on the centroid (not the bounding box) makes an object's ``(x, y)`` the centre of its painted
    pixel mass, which is what a viewer perceives as "where the object is" (matters for triangles, hearts).
    """
    raw = {
        Shape.CIRCLE: _circle(),
        Shape.SQUARE: np.array([[-0.85, -0.85], [0.85, -0.85], [0.85, 0.85], [-0.85, 0.85]]),
        Shape.RECTANGLE: np.array([[-1.0, -0.5], [1.0, -0.5], [1.0, 0.5], [-1.0, 0.5]]),
        Shape.TRIANGLE: np.array([[0.0, -1.0], [0.95, 0.6], [-0.95, 0.6]]),
        Shape.STAR: _star(),
        Shape.DIAMOND: np.array([[0.0, -1.0], [0.72, 0.0], [0.0, 1.0], [-0.72, 0.0]]),
        Shape.CROSS: np.array(
            [
                [-0.32, -0.95],
                [0.32, -0.95],
                [0.32, -0.32],
                [0.95, -0.32],
                [0.95, 0.32],
                [0.32, 0.32],
                [0.32, 0.95],
                [-0.32, 0.95],
                [-0.32, 0.32],
                [-0.95, 0.32],
                [-0.95, -0.32],
                [-0.32, -0.32],
            ]
        ),
        Shape.HEART: _heart(),
    }
    out = {}
    for shape, pts in raw.items():
        pts = np.asarray(pts, dtype=float)
        out[shape] = pts - _centroid(pts)
    return out


_OUTLINES = _make_outlines()


def unit_outline(shape: Shape) -> np.ndarray:
    """The shape's outline polygon, shape ``(n, 2)``, centroid at the origin, half-extent about 1."""
    return _OUTLINES[shape].copy()


@cache
def object_extent(shape: Shape, size: Size) -> tuple[float, float, float, float]:
    """How far the object reaches from its centre: ``(left, top, right, bottom)``, in image-side units."""
    pts = _OUTLINES[shape] * size.radius
    return (-pts[:, 0].min(), -pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())


def draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int, fill) -> None:
    """Paint ``obj`` onto ``draw``, an image ``side`` pixels square, with ``fill``.

    Coordinates are continuous with pixel ``i`` spanning ``[i, i+1)``, which is PIL's own polygon convention
    (measured: with this mapping the painted pixel mass is centred on ``(x, y)`` to within 0.01 pixel on
    average, while a half-pixel shift biases it by 1/8 pixel after 4x downsampling).
    """
    pts = _OUTLINES[obj.shape] * (obj.size.radius * side)
    pts = pts + np.array([obj.x * side, obj.y * side])
    draw.polygon([(float(px), float(py)) for px, py in pts], fill=fill)


def object_mask(obj: SceneObject, side: int = 64) -> np.ndarray:
    """Boolean ``(side, side)`` mask of the pixels ``obj`` covers (no anti-aliasing)."""
    img = Image.new("L", (side, side), 0)
    draw_object(ImageDraw.Draw(img), obj, side, 255)
    return np.asarray(img) > 127


def visible_fractions(objects: Sequence[SceneObject], side: int = 64) -> list[float]:
    """For objects painted in order (later on top), the fraction of each one's area left visible."""
    masks = [object_mask(o, side) for o in objects]
    covered = np.zeros((side, side), dtype=bool)
    out = [0.0] * len(masks)
    for i in range(len(masks) - 1, -1, -1):  # walk from the top object down, accumulating what covers
        m = masks[i]
        total = int(m.sum())
        out[i] = 1.0 if total == 0 else float((m & ~covered).sum()) / total
        covered |= m
    return out


def touching(a: SceneObject, b: SceneObject, side: int = 64) -> bool:
    """True if the two objects overlap or come within one pixel of each other at ``side`` resolution."""
    ma, mb = object_mask(a, side), object_mask(b, side)
    grown = ma.copy()  # one-pixel dilation (4-neighbourhood) of a's mask
    grown[1:, :] |= ma[:-1, :]
    grown[:-1, :] |= ma[1:, :]
    grown[:, 1:] |= ma[:, :-1]
    grown[:, :-1] |= ma[:, 1:]
    return bool((grown & mb).any())


# --- spatial relations ---------------------------------------------------------------------------------


class Relation(StrEnum):
    """Spatial relation of object A to object B ("A is left of B")."""

    LEFT_OF = "left of"
    RIGHT_OF = "right of"
    ABOVE = "above"
    BELOW = "below"


# Centres must be this far apart along the relation's axis for the relation to count as clearly true.
# About 8 pixels at 64x64: less than that and a viewer would rather say "above"/"next to".
CLEAR_SEPARATION = 0.12


def _signed_offset(a: SceneObject, b: SceneObject, rel: Relation) -> float:
    """How far A is from B in the relation's direction (positive = the relation holds)."""
    if rel is Relation.LEFT_OF:
        return b.x - a.x
    if rel is Relation.RIGHT_OF:
        return a.x - b.x
    if rel is Relation.ABOVE:
        return b.y - a.y
    return a.y - b.y


def relation_truth(a: SceneObject, b: SceneObject, rel: Relation) -> bool | None:
    """Whether "A is <rel> B": True if clearly so, False if not at all, None if borderline.

    True needs the centres :data:`CLEAR_SEPARATION` apart in the right direction; False means A is level
    with or on the other side of B. In between the answer is a matter of opinion, so questions avoid it.
    """
    off = _signed_offset(a, b, rel)
    if off >= CLEAR_SEPARATION:
        return True
    if off <= 0.0:
        return False
    return None


def clear_relations(a: SceneObject, b: SceneObject) -> list[Relation]:
    """Relations that clearly hold from A to B."""
    return [r for r in Relation if relation_truth(a, b, r) is True]


# --- 3x3 grid positions ----------------------------------------------------------------------------------

# Position names on the 3x3 grid, indexed [row][col]; the middle row and column drop their own word.
POSITION_NAMES: tuple[tuple[str, ...], ...] = (
    ("top left", "top", "top right"),
    ("left", "centre", "right"),
    ("bottom left", "bottom", "bottom right"),
)

# An object's centre must be this far from a grid line for its position word to be unambiguous.
POSITION_MARGIN = 0.04


def position_cell(obj: SceneObject) -> tuple[int, int]:
    """(row, col) of the 3x3 grid cell containing the object's centre."""
    col = min(int(obj.x * 3), 2)
    row = min(int(obj.y * 3), 2)
    return row, col


def position_name(obj: SceneObject) -> str:
    """Position word of the object's centre: "top left", "top", ..., "centre", ..., "bottom right"."""
    row, col = position_cell(obj)
    return POSITION_NAMES[row][col]


def position_is_clear(obj: SceneObject, margin: float = POSITION_MARGIN) -> bool:
    """True if the centre is at least ``margin`` away from every grid line, so the word is not borderline."""
    lines = (1 / 3, 2 / 3)
    return all(abs(obj.x - g) >= margin and abs(obj.y - g) >= margin for g in lines)
