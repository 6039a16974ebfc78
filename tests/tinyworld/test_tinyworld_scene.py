"""Scene sampling: determinism, attribute controls, placement rules."""

from __future__ import annotations

import numpy as np
import pytest

from flamingo_vlm.tinyworld import (
    Background,
    BackgroundKind,
    Colour,
    Direction,
    ObjectSpec,
    Shape,
    Size,
    background_clashes,
    colour_distance,
    object_extent,
    sample_scene,
    visible_fractions,
)
from flamingo_vlm.tinyworld.geometry import touching
from flamingo_vlm.tinyworld.scene import BACKGROUND_CLASH_DISTANCE


def _scenes(seed: int, n: int, **kw):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, **kw) for _ in range(n)]


def test_vocabulary_sizes():
    assert len(Shape) >= 8
    assert {c.value for c in Colour} >= {
        "red",
        "orange",
        "yellow",
        "green",
        "teal",
        "blue",
        "purple",
        "pink",
        "brown",
        "black",
        "gray",
        "white",
    }
    assert [s.value for s in Size] == ["small", "medium", "large"]
    assert Size.SMALL.radius < Size.MEDIUM.radius < Size.LARGE.radius


def test_palette_entries_are_far_apart():
    for a in Colour:
        for b in Colour:
            if a != b:
                assert colour_distance(a, b) > 80, (a, b)


def test_same_seed_same_scenes_different_seed_differs():
    assert _scenes(7, 50) == _scenes(7, 50)
    assert _scenes(7, 50) != _scenes(8, 50)


def test_object_count_and_attribute_pools():
    shapes, colours, sizes = [Shape.STAR, Shape.HEART], [Colour.RED, Colour.BLUE, Colour.WHITE], [Size.SMALL]
    for s in _scenes(1, 200, min_objects=2, max_objects=3, shapes=shapes, colours=colours, sizes=sizes):
        assert 2 <= len(s.objects) <= 3
        for o in s.objects:
            assert o.shape in shapes and o.colour in colours and o.size in sizes


def test_counts_cover_the_range():
    counts = {len(s.objects) for s in _scenes(2, 300, min_objects=1, max_objects=4)}
    assert counts == {1, 2, 3, 4}


def test_include_specs_are_present_and_pools_apply_to_the_rest():
    others = [s for s in Shape if s is not Shape.STAR]
    for s in _scenes(3, 200, include=[ObjectSpec(shape=Shape.STAR, colour=Colour.BLUE)], shapes=others):
        stars = [o for o in s.objects if o.shape is Shape.STAR]
        assert len(stars) == 1 and stars[0].colour is Colour.BLUE


def test_objects_inside_image_and_recognisable():
    for s in _scenes(4, 300, min_objects=3, max_objects=4):
        for o in s.objects:
            left, top, right, bottom = object_extent(o.shape, o.size)
            assert 0 <= o.x - left and o.x + right <= 1
            assert 0 <= o.y - top and o.y + bottom <= 1
        assert min(visible_fractions(s.objects)) >= 0.75
        for i, a in enumerate(s.objects):
            for b in s.objects[i + 1 :]:
                if a.colour == b.colour:
                    assert not touching(a, b)


def test_background_never_clashes_with_objects():
    seen_kinds = set()
    for s in _scenes(5, 400):
        seen_kinds.add(s.background.kind)
        for o in s.objects:
            assert not background_clashes(s.background, o.colour)
            for c in s.background.colours:
                assert colour_distance(o.colour, c) >= BACKGROUND_CLASH_DISTANCE
    assert seen_kinds == set(BackgroundKind)


def test_background_kind_control_and_fixed_background():
    for s in _scenes(6, 50, background_kinds=[BackgroundKind.PLAIN]):
        assert s.background.kind is BackgroundKind.PLAIN
    bg = Background(BackgroundKind.PLAIN, (Colour.GRAY,))
    for s in _scenes(6, 50, background=bg):
        assert s.background == bg
        assert all(o.colour not in (Colour.GRAY, Colour.PURPLE) for o in s.objects)  # purple is near gray


def test_background_validates_colour_count():
    with pytest.raises(ValueError):
        Background(BackgroundKind.SPLIT, (Colour.RED,))
    with pytest.raises(ValueError):
        Background(BackgroundKind.PLAIN, (Colour.RED, Colour.BLUE))


def test_impossible_request_raises():
    with pytest.raises(ValueError):
        sample_scene(
            np.random.default_rng(0),
            colours=[Colour.GRAY],
            background=Background(BackgroundKind.PLAIN, (Colour.GRAY,)),
        )


def test_a_direction_played_backwards_points_the_other_way() -> None:
    for direction in Direction:
        assert direction.opposite.vector == tuple(-v for v in direction.vector)
        assert direction.opposite.opposite is direction
