"""Rendering: determinism, shapes where the scene says, colours that stay distinguishable."""

from __future__ import annotations

import time

import numpy as np
import pytest

from flamingo_vlm.tinyworld import (
    Background,
    BackgroundKind,
    Colour,
    Scene,
    SceneObject,
    Shape,
    Size,
    render_scene,
    sample_scene,
)


def _pixels(img) -> np.ndarray:
    return np.asarray(img, dtype=float)


def _object_mask(arr: np.ndarray, colour: Colour, bg: Colour) -> np.ndarray:
    """Pixels closer to the object's colour than to the background's (anti-aliased edges split evenly)."""
    d_obj = np.linalg.norm(arr - np.array(colour.rgb), axis=-1)
    d_bg = np.linalg.norm(arr - np.array(bg.rgb), axis=-1)
    return d_obj < d_bg


def _coverage(arr: np.ndarray, colour: Colour, bg: Colour) -> np.ndarray:
    """Per-pixel fraction of the object (0 = background, 1 = object), from the blend of the two colours."""
    o, b = np.array(colour.rgb, dtype=float), np.array(bg.rgb, dtype=float)
    return np.clip(((arr - b) @ (o - b)) / ((o - b) @ (o - b)), 0.0, 1.0)


def _single(shape: Shape, colour: Colour, size: Size, x: float, y: float, bg: Colour = Colour.GRAY) -> Scene:
    return Scene(Background(BackgroundKind.PLAIN, (bg,)), (SceneObject(shape, colour, size, x, y),))


def test_image_mode_and_size():
    scene = sample_scene(np.random.default_rng(0))
    for side in (32, 64, 96):
        img = render_scene(scene, side)
        assert img.mode == "RGB" and img.size == (side, side)


def test_same_seed_byte_equal_images_different_seed_differs():
    def images(seed):
        rng = np.random.default_rng(seed)
        return [render_scene(sample_scene(rng)).tobytes() for _ in range(30)]

    assert images(11) == images(11)
    assert images(11) != images(12)


def test_every_background_kind_renders_deterministically():
    rng = np.random.default_rng(3)
    for kind in BackgroundKind:
        scene = sample_scene(rng, background_kinds=[kind])
        assert render_scene(scene).tobytes() == render_scene(scene).tobytes()


@pytest.mark.parametrize("shape", list(Shape))
def test_object_is_drawn_at_its_centre(shape):
    rng = np.random.default_rng(list(Shape).index(shape))
    side = 64
    for size in Size:
        x, y = rng.uniform(0.3, 0.7, size=2)
        colour = Colour.BLUE if rng.random() < 0.5 else Colour.ORANGE
        arr = _pixels(render_scene(_single(shape, colour, size, x, y), side))
        # The pixel containing the centre is the object's colour.
        cx, cy = int(x * side), int(y * side)
        assert np.allclose(arr[cy, cx], colour.rgb, atol=1)
        # The object's pixel mass (anti-aliased coverage as weight) is centred on (x, y); pixel i covers
        # [i, i+1), so its centre is i + 0.5.
        coverage = _coverage(arr, colour, Colour.GRAY)
        yy, xx = np.mgrid[0:side, 0:side] + 0.5
        assert abs((coverage * xx).sum() / coverage.sum() - x * side) < 0.25
        assert abs((coverage * yy).sum() / coverage.sum() - y * side) < 0.25


@pytest.mark.parametrize("shape", list(Shape))
def test_extent_grows_with_size(shape):
    areas, widths = [], []
    for size in Size:
        arr = _pixels(render_scene(_single(shape, Colour.RED, size, 0.5, 0.5)))
        mask = _object_mask(arr, Colour.RED, Colour.GRAY)
        cols = np.nonzero(mask.any(axis=0))[0]
        areas.append(mask.sum())
        widths.append(cols.max() - cols.min() + 1)
    assert areas[0] < areas[1] < areas[2]
    assert widths[0] < widths[1] < widths[2]


def test_shapes_are_distinct_silhouettes():
    masks = {}
    for shape in Shape:
        arr = _pixels(render_scene(_single(shape, Colour.BLACK, Size.LARGE, 0.5, 0.5, Colour.WHITE)))
        masks[shape] = _object_mask(arr, Colour.BLACK, Colour.WHITE)
    for a in Shape:
        for b in Shape:
            if a != b:
                iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                assert iou < 0.9, (a, b, iou)


def test_rendered_colours_are_nearest_to_their_own_palette_entry():
    palette = {c: np.array(c.rgb, dtype=float) for c in Colour}
    for colour in Colour:
        for bg in Colour:
            if bg == colour:
                continue
            arr = _pixels(render_scene(_single(Shape.SQUARE, colour, Size.SMALL, 0.5, 0.5, bg)))
            # Average over the object's interior (away from anti-aliased edges).
            patch = arr[28:36, 28:36].reshape(-1, 3).mean(axis=0)
            nearest = min(palette, key=lambda c: np.linalg.norm(palette[c] - patch))
            assert nearest == colour, (colour, bg, patch)


@pytest.mark.parametrize("colour", [Colour.TEAL, Colour.GRAY, Colour.WHITE])
def test_noise_background_keeps_its_colour(colour):
    bg = Background(BackgroundKind.NOISE, (colour,), texture_seed=5)
    arr = _pixels(render_scene(Scene(bg, ())))
    assert arr.std() > 2  # there is texture
    # Clipping at 0/255 may shift the mean slightly, never towards another colour.
    assert np.allclose(arr.reshape(-1, 3).mean(axis=0), colour.rgb, atol=8)
    assert np.abs(arr - np.array(colour.rgb)).max() <= 14


def test_split_and_gradient_backgrounds_show_both_colours():
    a, b = Colour.RED, Colour.WHITE
    split = _pixels(render_scene(Scene(Background(BackgroundKind.SPLIT, (a, b), "left-right"), ())))
    assert np.allclose(split[:, :30], a.rgb) and np.allclose(split[:, 34:], b.rgb)
    split = _pixels(render_scene(Scene(Background(BackgroundKind.SPLIT, (a, b), "top-bottom"), ())))
    assert np.allclose(split[:30], a.rgb) and np.allclose(split[34:], b.rgb)
    grad = _pixels(render_scene(Scene(Background(BackgroundKind.GRADIENT, (a, b), "top-bottom"), ())))
    assert np.allclose(grad[0], a.rgb, atol=6) and np.allclose(grad[-1], b.rgb, atol=6)
    assert np.all(np.diff(grad[:, 0, 1]) >= 0)  # green channel rises steadily from red to white


def test_later_objects_are_painted_on_top():
    under = SceneObject(Shape.SQUARE, Colour.RED, Size.LARGE, 0.5, 0.5)
    over = SceneObject(Shape.CIRCLE, Colour.BLUE, Size.SMALL, 0.5, 0.5)
    arr = _pixels(render_scene(Scene(Background(BackgroundKind.PLAIN, (Colour.WHITE,)), (under, over))))
    assert np.allclose(arr[32, 32], Colour.BLUE.rgb, atol=1)


def test_rendering_is_fast():
    # Budget: 10,000 scenes well under a minute, i.e. < 6 ms each; allow slack for slow CI machines.
    scenes = [sample_scene(np.random.default_rng(i)) for i in range(200)]
    start = time.perf_counter()
    for s in scenes:
        render_scene(s)
    assert (time.perf_counter() - start) / len(scenes) < 0.006
