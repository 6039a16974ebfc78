"""Tiny-world data model: shapes, colours, sizes, backgrounds, objects, scenes, and scene sampling.

A scene is pure data (no pixels); :mod:`flamingo_vlm.tinyworld.render` turns it into an image and
:mod:`flamingo_vlm.tinyworld.language` talks about it. Coordinates are normalised to the unit square with
the origin at the *top left* (image convention): ``x`` grows to the right, ``y`` grows downwards, so "above"
means a smaller ``y``.

Everything random takes an explicit :class:`numpy.random.Generator`, so the same seed gives the same scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from ._random import choice

__all__ = [
    "BACKGROUND_CLASH_DISTANCE",
    "Background",
    "BackgroundKind",
    "Colour",
    "Direction",
    "ObjectSpec",
    "Scene",
    "SceneObject",
    "Shape",
    "Size",
    "background_clashes",
    "colour_distance",
    "place_object",
    "placement_ok",
    "position_range",
    "sample_background",
    "sample_scene",
]


class Shape(StrEnum):
    """Object shapes. Heart rather than hexagon: at 64x64 a small hexagon is too easily read as a circle."""

    CIRCLE = "circle"
    SQUARE = "square"
    RECTANGLE = "rectangle"
    TRIANGLE = "triangle"
    STAR = "star"
    DIAMOND = "diamond"
    CROSS = "cross"
    HEART = "heart"

    @property
    def plural(self) -> str:
        """English plural ("crosses", "stars")."""
        return self.value + ("es" if self.value.endswith("ss") else "s")


class Colour(StrEnum):
    """Named colours; :attr:`rgb` gives the palette entry used to paint them."""

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    GREEN = "green"
    TEAL = "teal"
    BLUE = "blue"
    PURPLE = "purple"
    PINK = "pink"
    BROWN = "brown"
    BLACK = "black"
    GRAY = "gray"
    WHITE = "white"

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The palette entry (0-255 per channel)."""
        return _PALETTE[self]


# Chosen so that every pair is at least ~85 apart in RGB (closest: orange/yellow, purple/gray), which keeps
# them apart after anti-aliasing and JPEG-free downsampling at 64x64.
_PALETTE: dict[Colour, tuple[int, int, int]] = {
    Colour.RED: (220, 30, 30),
    Colour.ORANGE: (255, 140, 0),
    Colour.YELLOW: (250, 220, 30),
    Colour.GREEN: (40, 160, 50),
    Colour.TEAL: (0, 150, 150),
    Colour.BLUE: (30, 70, 220),
    Colour.PURPLE: (130, 50, 180),
    Colour.PINK: (255, 130, 200),
    Colour.BROWN: (125, 75, 35),
    Colour.BLACK: (20, 20, 20),
    Colour.GRAY: (128, 128, 128),
    Colour.WHITE: (245, 245, 245),
}


class Size(StrEnum):
    """Absolute object size; :attr:`radius` is the half-extent as a fraction of the image side."""

    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"

    @property
    def radius(self) -> float:
        """Half-extent of the shape's unit outline, in image-side units."""
        return _SIZE_RADIUS[self]


# About 6, 8.6 and 11.5 pixels at 64x64: small shapes stay recognisable, large ones leave room for four.
_SIZE_RADIUS: dict[Size, float] = {Size.SMALL: 0.095, Size.MEDIUM: 0.135, Size.LARGE: 0.18}


class Direction(StrEnum):
    """Motion directions in clips (screen directions: "up" is towards the top of the image)."""

    LEFT = "left"
    RIGHT = "right"
    UP = "up"
    DOWN = "down"

    @property
    def vector(self) -> tuple[float, float]:
        """Unit (dx, dy) in image coordinates (y grows downwards)."""
        return {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}[self.value]

    @property
    def opposite(self) -> Direction:
        """The direction a clip of this motion shows when played backwards."""
        flipped = {"left": "right", "right": "left", "up": "down", "down": "up"}
        return Direction(flipped[self.value])


class BackgroundKind(StrEnum):
    """How the background is painted."""

    PLAIN = "plain"  # one flat colour
    SPLIT = "split"  # two flat halves
    NOISE = "noise"  # one colour with light per-pixel speckle
    GRADIENT = "gradient"  # linear blend between two colours


def colour_distance(a: Colour | tuple[float, float, float], b: Colour | tuple[float, float, float]) -> float:
    """Euclidean RGB distance between two colours or RGB triples."""
    ra = np.asarray(a.rgb if isinstance(a, Colour) else a, dtype=float)
    rb = np.asarray(b.rgb if isinstance(b, Colour) else b, dtype=float)
    return float(np.linalg.norm(ra - rb))


# An object colour must be at least this far (RGB) from every colour the background shows. It rules out
# e.g. orange on yellow or purple on gray, while leaving most of the palette usable on any background.
BACKGROUND_CLASH_DISTANCE = 115.0
# The two colours of a split/gradient must differ clearly, else the background reads as "plain".
_MIN_TWO_TONE_DISTANCE = 120.0
# Speckle amplitude (+-) for noise backgrounds, in RGB units: visible texture, never a colour shift.
NOISE_AMPLITUDE = 14


@dataclass(frozen=True)
class Background:
    """A scene's background.

    ``colours`` has one entry for plain/noise and two for split/gradient (first = left or top side).
    ``direction`` is ``"left-right"`` (halves / fade side by side) or ``"top-bottom"``; it only matters for
    split and gradient. ``texture_seed`` fixes the speckle pattern of noise backgrounds so rendering stays a
    pure function of the scene.
    """

    kind: BackgroundKind
    colours: tuple[Colour, ...]
    direction: str = "left-right"
    texture_seed: int = 0

    def __post_init__(self) -> None:
        want = 1 if self.kind in (BackgroundKind.PLAIN, BackgroundKind.NOISE) else 2
        if len(self.colours) != want:
            raise ValueError(f"{self.kind} background needs {want} colour(s), got {self.colours}")
        if self.direction not in ("left-right", "top-bottom"):
            raise ValueError(f"direction must be 'left-right' or 'top-bottom', got {self.direction!r}")

    def shown_rgbs(self) -> list[tuple[float, float, float]]:
        """RGB values that appear on this background (gradient: sampled along the blend)."""
        if self.kind is BackgroundKind.GRADIENT:
            a = np.asarray(self.colours[0].rgb, dtype=float)
            b = np.asarray(self.colours[1].rgb, dtype=float)
            return [tuple(a + t * (b - a)) for t in np.linspace(0.0, 1.0, 9)]
        return [tuple(float(v) for v in c.rgb) for c in self.colours]


def background_clashes(background: Background, colour: Colour) -> bool:
    """True if ``colour`` would be hard to see somewhere on ``background``."""
    return any(colour_distance(colour, rgb) < BACKGROUND_CLASH_DISTANCE for rgb in background.shown_rgbs())


@dataclass(frozen=True)
class SceneObject:
    """One object: its centre ``(x, y)`` in [0, 1] (top-left origin) is the centroid of its painted area."""

    shape: Shape
    colour: Colour
    size: Size
    x: float
    y: float

    def moved_to(self, x: float, y: float) -> SceneObject:
        """A copy at another position."""
        return replace(self, x=x, y=y)


@dataclass(frozen=True)
class ObjectSpec:
    """A partial description of an object: any attribute left as ``None`` is free.

    Used to ask :func:`sample_scene` for particular objects and, in :mod:`.language`, as a referring
    expression ("the red star" = ``ObjectSpec(shape=STAR, colour=RED)``).
    """

    shape: Shape | None = None
    colour: Colour | None = None
    size: Size | None = None

    def matches(self, obj: SceneObject) -> bool:
        """True if ``obj`` has every attribute this spec fixes."""
        return (
            (self.shape is None or obj.shape == self.shape)
            and (self.colour is None or obj.colour == self.colour)
            and (self.size is None or obj.size == self.size)
        )


@dataclass(frozen=True)
class Scene:
    """A background and objects, painted in list order (later objects on top)."""

    background: Background
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Accept any sequence but store a tuple so scenes are hashable and immutable.
        object.__setattr__(self, "objects", tuple(self.objects))

    def matching(self, spec: ObjectSpec) -> list[int]:
        """Indices of the objects that ``spec`` matches."""
        return [i for i, o in enumerate(self.objects) if spec.matches(o)]


_BACKGROUND_KIND_WEIGHTS: dict[BackgroundKind, float] = {
    BackgroundKind.PLAIN: 0.4,
    BackgroundKind.NOISE: 0.2,
    BackgroundKind.SPLIT: 0.2,
    BackgroundKind.GRADIENT: 0.2,
}


def sample_background(
    rng: np.random.Generator,
    *,
    kinds: Sequence[BackgroundKind] | None = None,
    must_show: Sequence[Colour] = (),
    colours: Sequence[Colour] | None = None,
    max_tries: int = 200,
) -> Background:
    """Draw a background on which every colour in ``must_show`` stays clearly visible.

    ``kinds`` restricts the background kinds (default: all, plain most often); ``colours`` restricts the
    colours the background may use (default: the whole palette).
    """
    kinds = list(kinds) if kinds is not None else list(BackgroundKind)
    palette = list(colours) if colours is not None else list(Colour)
    weights = [_BACKGROUND_KIND_WEIGHTS[k] for k in kinds]
    for _ in range(max_tries):
        kind = choice(rng, kinds, weights)
        direction = choice(rng, ["left-right", "top-bottom"])
        if kind in (BackgroundKind.PLAIN, BackgroundKind.NOISE):
            bg_colours: tuple[Colour, ...] = (choice(rng, palette),)
        else:
            a, b = choice(rng, palette), choice(rng, palette)
            if colour_distance(a, b) < _MIN_TWO_TONE_DISTANCE:
                continue
            bg_colours = (a, b)
        bg = Background(kind, bg_colours, direction, int(rng.integers(0, 2**31 - 1)))
        if not any(background_clashes(bg, c) for c in must_show):
            return bg
    raise ValueError(f"no background of kinds {kinds} keeps {list(must_show)} visible")


def sample_scene(
    rng: np.random.Generator,
    *,
    min_objects: int = 1,
    max_objects: int = 4,
    shapes: Sequence[Shape] | None = None,
    colours: Sequence[Colour] | None = None,
    sizes: Sequence[Size] | None = None,
    include: Sequence[ObjectSpec] = (),
    background: Background | None = None,
    background_kinds: Sequence[BackgroundKind] | None = None,
    background_colours: Sequence[Colour] | None = None,
    min_visible: float = 0.75,
    max_tries: int = 100,
) -> Scene:
    """Draw a random scene.

    Which attributes are drawn, and from what:

    * the number of objects is uniform in ``[min_objects, max_objects]`` (at least ``len(include)``);
    * ``include`` lists objects the scene must contain, as :class:`ObjectSpec`; any attribute a spec leaves
      ``None`` is drawn from the pools below (e.g. ``include=[ObjectSpec(shape=Shape.STAR,
      colour=Colour.BLUE)]`` guarantees a blue star);
    * every other object draws its shape, colour and size from ``shapes``, ``colours`` and ``sizes``
      (default: all). So ``include=[ObjectSpec(shape=STAR)], shapes=[s for s in Shape if s != STAR]`` makes
      a scene with exactly one star;
    * the background is ``background`` if given, else drawn from ``background_kinds`` and
      ``background_colours`` (default: all) so that it never clashes with an included object's colour
      (see :data:`BACKGROUND_CLASH_DISTANCE`); other objects never get a colour that clashes with it.

    Objects are kept inside the image and placed so that each keeps at least ``min_visible`` of its area
    visible once all objects are painted (in list order, later on top; the list is shuffled so
    ``include`` objects are not always at the bottom).
    """
    if not 0 <= min_objects <= max_objects:
        raise ValueError(f"need 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    shape_pool = list(shapes) if shapes is not None else list(Shape)
    colour_pool = list(colours) if colours is not None else list(Colour)
    size_pool = list(sizes) if sizes is not None else list(Size)
    if not shape_pool or not colour_pool or not size_pool:
        raise ValueError("shape, colour and size pools must be non-empty")
    include = list(include)

    fixed_colours = [s.colour for s in include if s.colour is not None]
    if background is not None and any(background_clashes(background, c) for c in fixed_colours):
        raise ValueError("an included object's colour clashes with the given background")
    for _ in range(max_tries):
        bg = background
        if bg is None:
            # Only include colours constrain the background; pool colours that clash with it are simply
            # not drawn for the other objects.
            bg = sample_background(rng, kinds=background_kinds, must_show=fixed_colours, colours=background_colours)
        usable = [c for c in colour_pool if not background_clashes(bg, c)]
        n = int(rng.integers(min_objects, max_objects + 1))
        n = max(n, len(include))
        specs = include + [ObjectSpec() for _ in range(n - len(include))]
        if any(s.colour is None for s in specs) and not usable:
            if background is not None:
                raise ValueError("every colour in the pool clashes with the given background")
            continue
        order = rng.permutation(len(specs))
        placed: list[SceneObject] = []
        ok = True
        for k in order:
            spec = specs[int(k)]
            shape = spec.shape if spec.shape is not None else choice(rng, shape_pool)
            colour = spec.colour if spec.colour is not None else choice(rng, usable)
            size = spec.size if spec.size is not None else choice(rng, size_pool)
            obj = place_object(rng, shape, colour, size, placed, min_visible=min_visible)
            if obj is None:
                ok = False
                break
            placed.append(obj)
        if ok:
            return Scene(bg, tuple(placed))
    raise ValueError("could not place the requested objects; try fewer or smaller objects")


def placement_ok(obj: SceneObject, others: Sequence[SceneObject], min_visible: float = 0.75) -> bool:
    """Whether ``obj`` can be painted on top of ``others``.

    Every object must keep ``min_visible`` of its area visible, and objects of the same colour must not
    touch: two touching red shapes would merge into one unrecognisable red blob.
    """
    # Imported here because geometry imports this module for the data model.
    from .geometry import touching, visible_fractions

    if not others:
        return True
    if any(o.colour == obj.colour and touching(o, obj) for o in others):
        return False
    return min(visible_fractions([*others, obj])) >= min_visible


def position_range(shape: Shape, size: Size) -> tuple[float, float, float, float]:
    """``(lo_x, hi_x, lo_y, hi_y)``: where the centre may go so the whole object stays inside the image."""
    from .geometry import object_extent  # here: geometry imports this module

    left, top, right, bottom = object_extent(shape, size)
    # One pixel of margin at 64x64 so anti-aliased edges are never cut by the image border.
    m = 1.0 / 64
    return left + m, 1.0 - right - m, top + m, 1.0 - bottom - m


def place_object(
    rng: np.random.Generator,
    shape: Shape,
    colour: Colour,
    size: Size,
    placed: Sequence[SceneObject],
    *,
    min_visible: float = 0.75,
    tries: int = 60,
) -> SceneObject | None:
    """Try random positions for one new (topmost) object; None if none passes :func:`placement_ok`."""
    lo_x, hi_x, lo_y, hi_y = position_range(shape, size)
    for _ in range(tries):
        obj = SceneObject(shape, colour, size, float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y)))
        if placement_ok(obj, placed, min_visible):
            return obj
    return None
