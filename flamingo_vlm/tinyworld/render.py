"""Paint tiny-world scenes as RGB images.

Shapes are drawn at ``SUPERSAMPLE`` times the target size and box-downsampled, which anti-aliases edges
cheaply. Rendering is a pure function of ``(scene, size)``: the same scene always gives byte-equal pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .geometry import draw_object
from .scene import NOISE_AMPLITUDE, Background, BackgroundKind, Scene

__all__ = ["SUPERSAMPLE", "render_background", "render_scene"]

# 4x supersampling: 16 samples per output pixel gives smooth edges; more costs time for no visible gain.
SUPERSAMPLE = 4


def render_background(background: Background, side: int, *, texture_side: int | None = None) -> Image.Image:
    """Paint a background ``side`` pixels square.

    Noise speckle is drawn at ``texture_side`` (default ``side``) and enlarged without smoothing, so that
    after supersampled rendering is downsampled the speckle keeps one-output-pixel grain instead of being
    averaged away.
    """
    cols = [np.asarray(c.rgb, dtype=np.float32) for c in background.colours]
    kind = background.kind
    if kind is BackgroundKind.PLAIN:
        return Image.new("RGB", (side, side), background.colours[0].rgb)
    if kind is BackgroundKind.SPLIT:
        img = Image.new("RGB", (side, side), background.colours[0].rgb)
        half = side // 2
        box = (half, 0, side, side) if background.direction == "left-right" else (0, half, side, side)
        ImageDraw.Draw(img).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=background.colours[1].rgb)
        return img
    if kind is BackgroundKind.GRADIENT:
        # Blend weight by pixel centre, along x for left-right and along y for top-bottom.
        t = (np.arange(side, dtype=np.float32) + 0.5) / side
        ramp = cols[0][None, :] + t[:, None] * (cols[1] - cols[0])[None, :]  # (side, 3)
        if background.direction == "left-right":
            arr = np.broadcast_to(ramp[None, :, :], (side, side, 3))
        else:
            arr = np.broadcast_to(ramp[:, None, :], (side, side, 3))
        return Image.fromarray(np.ascontiguousarray(np.rint(arr).astype(np.uint8)), "RGB")
    # NOISE: independent speckle per texture pixel from the background's own seed.
    tside = texture_side or side
    rng = np.random.default_rng(background.texture_seed)
    noise = rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, size=(tside, tside, 1), dtype=np.int16)
    arr = np.clip(cols[0].astype(np.int16)[None, None, :] + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    return img if tside == side else img.resize((side, side), Image.Resampling.NEAREST)


def render_scene(scene: Scene, size: int = 64) -> Image.Image:
    """Render ``scene`` as a ``size`` x ``size`` RGB image (objects painted in list order, later on top)."""
    big = size * SUPERSAMPLE
    img = render_background(scene.background, big, texture_side=size)
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        draw_object(draw, obj, big, obj.colour.rgb)
    # reduce() is an exact box filter over SUPERSAMPLE x SUPERSAMPLE blocks: the anti-aliasing step.
    return img.reduce(SUPERSAMPLE)
