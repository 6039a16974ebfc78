"""Relations, grid positions and visibility computed from geometry."""

from __future__ import annotations

import numpy as np

from flamingo_vlm.tinyworld import (
    CLEAR_SEPARATION,
    Relation,
    SceneObject,
    Shape,
    Size,
    clear_relations,
    object_mask,
    position_is_clear,
    position_name,
    relation_truth,
    visible_fractions,
)


def _obj(x: float, y: float, shape: Shape = Shape.CIRCLE, size: Size = Size.SMALL) -> SceneObject:
    from flamingo_vlm.tinyworld import Colour

    return SceneObject(shape, Colour.RED, size, x, y)


def test_relations_follow_coordinates():
    a, b = _obj(0.2, 0.2), _obj(0.8, 0.8)  # a is up-left of b (y grows downwards)
    assert relation_truth(a, b, Relation.LEFT_OF) is True
    assert relation_truth(a, b, Relation.ABOVE) is True
    assert relation_truth(a, b, Relation.RIGHT_OF) is False
    assert relation_truth(a, b, Relation.BELOW) is False
    assert relation_truth(b, a, Relation.RIGHT_OF) is True
    assert relation_truth(b, a, Relation.BELOW) is True
    assert set(clear_relations(a, b)) == {Relation.LEFT_OF, Relation.ABOVE}


def test_relations_random_pairs_consistent_with_offsets():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        a, b = _obj(*rng.uniform(0, 1, 2)), _obj(*rng.uniform(0, 1, 2))
        offsets = {
            Relation.LEFT_OF: b.x - a.x,
            Relation.RIGHT_OF: a.x - b.x,
            Relation.ABOVE: b.y - a.y,
            Relation.BELOW: a.y - b.y,
        }
        for rel, off in offsets.items():
            truth = relation_truth(a, b, rel)
            if truth is True:
                assert off >= CLEAR_SEPARATION
            elif truth is False:
                assert off <= 0
            else:
                assert 0 < off < CLEAR_SEPARATION
        # A clear relation and its opposite never both hold.
        assert not (relation_truth(a, b, Relation.LEFT_OF) and relation_truth(a, b, Relation.RIGHT_OF))


def test_borderline_relation_is_undecided():
    a, b = _obj(0.45, 0.5), _obj(0.5, 0.2)
    assert relation_truth(a, b, Relation.LEFT_OF) is None


def test_position_names_on_three_by_three_grid():
    expected = {
        (0.1, 0.1): "top left",
        (0.5, 0.1): "top",
        (0.9, 0.1): "top right",
        (0.1, 0.5): "left",
        (0.5, 0.5): "centre",
        (0.9, 0.5): "right",
        (0.1, 0.9): "bottom left",
        (0.5, 0.9): "bottom",
        (0.9, 0.9): "bottom right",
    }
    for (x, y), name in expected.items():
        assert position_name(_obj(x, y)) == name
        assert position_is_clear(_obj(x, y))


def test_positions_near_grid_lines_are_not_clear():
    assert not position_is_clear(_obj(0.34, 0.5))
    assert not position_is_clear(_obj(0.5, 0.65))
    assert position_is_clear(_obj(0.45, 0.55))


def test_mask_centroid_matches_centre_for_every_shape():
    for shape in Shape:
        obj = _obj(0.5, 0.5, shape, Size.LARGE)
        m = object_mask(obj, 256)
        ys, xs = np.nonzero(m)
        assert abs((xs.mean() + 0.5) / 256 - 0.5) < 0.01, shape
        assert abs((ys.mean() + 0.5) / 256 - 0.5) < 0.01, shape


def test_visible_fractions_account_for_painting_order():
    big = _obj(0.5, 0.5, Shape.SQUARE, Size.LARGE)
    small = _obj(0.5, 0.5, Shape.SQUARE, Size.SMALL)
    fr = visible_fractions([big, small])
    assert fr[1] == 1.0 and 0.5 < fr[0] < 0.9
    assert visible_fractions([small, big])[0] == 0.0
    apart = visible_fractions([_obj(0.2, 0.2), _obj(0.8, 0.8)])
    assert apart == [1.0, 1.0]
