"""Short tiny-world clips: a scene in which objects move, change colour, appear or disappear.

A :class:`Clip` stores one *track* per object (the object in each frame, or ``None`` while it is absent) and
the events as structured labels, so language and evaluation code never need to look at pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
from PIL import Image

from ._random import choice
from .render import render_scene
from .scene import (
    Background,
    BackgroundKind,
    Colour,
    Direction,
    ObjectSpec,
    Scene,
    SceneObject,
    Shape,
    Size,
    background_clashes,
    placement_ok,
    position_range,
    sample_scene,
)

__all__ = [
    "DEFAULT_FRAMES",
    "Clip",
    "Event",
    "EventKind",
    "render_clip",
    "sample_clip",
]

# Flamingo trains on 8 frames per video.
DEFAULT_FRAMES = 8
# A move covers at least this much of the image side: about 2 pixels per frame at 64x64 and 8 frames,
# enough for the direction to be obvious from the first and last frame alone.
MIN_MOVE = 0.25
MAX_MOVE = 0.5


class EventKind(StrEnum):
    """What happens to one object in a clip."""

    MOVE = "move"
    COLOUR_CHANGE = "colour_change"
    APPEAR = "appear"
    DISAPPEAR = "disappear"


@dataclass(frozen=True)
class Event:
    """One event, on track ``track``.

    ``direction`` is set for moves (the object moves steadily from the first to the last frame);
    ``from_colour``/``to_colour`` for colour changes; ``frame`` is the first frame that shows the change for
    colour changes, appearances (first frame with the object) and disappearances (first frame without it).
    """

    kind: EventKind
    track: int
    direction: Direction | None = None
    from_colour: Colour | None = None
    to_colour: Colour | None = None
    frame: int | None = None


@dataclass(frozen=True)
class Clip:
    """A background, one track per object (``tracks[i][t]`` is object ``i`` in frame ``t`` or ``None``), events."""

    background: Background
    tracks: tuple[tuple[SceneObject | None, ...], ...]
    events: tuple[Event, ...]

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return len(self.tracks[0]) if self.tracks else 0

    def frame(self, t: int) -> Scene:
        """The scene shown in frame ``t`` (present objects, in track order)."""
        return Scene(self.background, tuple(tr[t] for tr in self.tracks if tr[t] is not None))

    def frames(self) -> list[Scene]:
        """All frames as scenes."""
        return [self.frame(t) for t in range(self.n_frames)]

    def track_objects(self, track: int) -> list[SceneObject]:
        """The object of ``track`` in every frame where it is present."""
        return [o for o in self.tracks[track] if o is not None]

    def event_for(self, track: int) -> Event | None:
        """The event that happens to ``track``, if any."""
        return next((e for e in self.events if e.track == track), None)


def _frames_ok(tracks: Sequence[Sequence[SceneObject | None]], min_visible: float) -> bool:
    """Every frame keeps every present object recognisable (same rule as for still scenes)."""
    n = len(tracks[0])
    for t in range(n):
        objs = [tr[t] for tr in tracks if tr[t] is not None]
        for k in range(1, len(objs)):
            if not placement_ok(objs[k], objs[:k], min_visible):
                return False
    return True


def _change_frame(rng: np.random.Generator, n_frames: int) -> int:
    """A frame in the middle half of the clip, so both "before" and "after" are shown for a while."""
    q = max(1, n_frames // 4)
    return int(rng.integers(q, max(q, n_frames - q) + 1)) if n_frames > 1 else 0


def _move_track(
    rng: np.random.Generator, obj: SceneObject, n_frames: int, directions: Sequence[Direction]
) -> tuple[list[SceneObject], Direction] | None:
    """A straight steady move in one of ``directions`` with room for it; None if none has room."""
    lo_x, hi_x, lo_y, hi_y = position_range(obj.shape, obj.size)
    room = {
        Direction.LEFT: hi_x - lo_x,
        Direction.RIGHT: hi_x - lo_x,
        Direction.UP: hi_y - lo_y,
        Direction.DOWN: hi_y - lo_y,
    }
    options = [d for d in directions if room[d] >= MIN_MOVE]
    if not options:
        return None
    direction = choice(rng, options)
    dist = float(rng.uniform(MIN_MOVE, min(MAX_MOVE, room[direction])))
    dx, dy = direction.vector
    lo, hi = (lo_x, hi_x) if dx else (lo_y, hi_y)
    sign = dx + dy  # +1 for right/down, -1 for left/up
    # Start far enough from the edge we move towards that the end stays inside the image.
    start = float(rng.uniform(lo, hi - dist)) if sign > 0 else float(rng.uniform(lo + dist, hi))
    steps = np.linspace(0.0, 1.0, n_frames)
    if dx:
        objs = [obj.moved_to(start + sign * dist * s, obj.y) for s in steps]
    else:
        objs = [obj.moved_to(obj.x, start + sign * dist * s) for s in steps]
    return objs, direction


def sample_clip(
    rng: np.random.Generator,
    *,
    n_frames: int = DEFAULT_FRAMES,
    event_kinds: Sequence[EventKind] | None = None,
    n_events: int = 1,
    directions: Sequence[Direction] | None = None,
    min_objects: int = 1,
    max_objects: int = 3,
    shapes: Sequence[Shape] | None = None,
    colours: Sequence[Colour] | None = None,
    sizes: Sequence[Size] | None = None,
    include: Sequence[ObjectSpec] = (),
    background_kinds: Sequence[BackgroundKind] | None = None,
    background_colours: Sequence[Colour] | None = None,
    min_visible: float = 0.75,
    max_tries: int = 200,
) -> Clip:
    """Draw a random clip with ``n_events`` events, each on its own object.

    The kinds of events are drawn (with replacement) from ``event_kinds`` (default: all), move directions
    from ``directions`` (default: all), new colours from ``colours`` (default: all). The clip has
    between ``min_objects`` and ``max_objects`` objects (at least ``n_events``); objects without an event
    stay still. ``shapes``, ``colours``, ``sizes``, ``include``, ``background_kinds`` and
    ``background_colours`` work as in
    :func:`~flamingo_vlm.tinyworld.scene.sample_scene` (``include`` objects are the first to get events).
    Every frame keeps every present object at least ``min_visible`` visible.
    """
    if n_frames < 2:
        raise ValueError("a clip needs at least 2 frames")
    kinds_pool = list(event_kinds) if event_kinds is not None else list(EventKind)
    direction_pool = list(directions) if directions is not None else list(Direction)
    for _ in range(max_tries):
        kinds = [choice(rng, kinds_pool) for _ in range(n_events)]
        n_obj = max(n_events, len(include), int(rng.integers(min_objects, max_objects + 1)))
        base = sample_scene(
            rng,
            min_objects=n_obj,
            max_objects=n_obj,
            shapes=shapes,
            colours=colours,
            sizes=sizes,
            include=include,
            background_kinds=background_kinds,
            background_colours=background_colours,
            min_visible=min_visible,
        )
        objs = list(base.objects)
        # Event objects: the included ones first (in scene order), then others.
        included = [i for i, o in enumerate(objs) if any(s.matches(o) for s in include)][: len(include)]
        order = included + [i for i in range(len(objs)) if i not in included]
        tracks: list[list[SceneObject | None]] = [[o] * n_frames for o in objs]
        events: list[Event] = []
        ok = True
        for kind, i in zip(kinds, order, strict=False):
            obj = objs[i]
            if kind is EventKind.MOVE:
                moved = _move_track(rng, obj, n_frames, direction_pool)
                if moved is None:
                    ok = False
                    break
                tracks[i], direction = list(moved[0]), moved[1]
                events.append(Event(kind, i, direction=direction))
                continue
            k = _change_frame(rng, n_frames)
            if kind is EventKind.COLOUR_CHANGE:
                pool = list(colours) if colours is not None else list(Colour)
                options = [c for c in pool if c != obj.colour and not background_clashes(base.background, c)]
                if not options:
                    ok = False
                    break
                new = choice(rng, options)
                tracks[i] = [obj if t < k else replace(obj, colour=new) for t in range(n_frames)]
                events.append(Event(kind, i, from_colour=obj.colour, to_colour=new, frame=k))
            elif kind is EventKind.APPEAR:
                tracks[i] = [None if t < k else obj for t in range(n_frames)]
                events.append(Event(kind, i, frame=k))
            else:
                tracks[i] = [obj if t < k else None for t in range(n_frames)]
                events.append(Event(kind, i, frame=k))
        if ok and _frames_ok(tracks, min_visible):
            ordered = tuple(sorted(events, key=lambda e: e.track))
            return Clip(base.background, tuple(tuple(tr) for tr in tracks), ordered)
    raise ValueError("could not build a clip with these constraints")


def render_clip(clip: Clip, size: int = 64) -> list[Image.Image]:
    """Render every frame of ``clip`` as a ``size`` x ``size`` RGB image."""
    return [render_scene(clip.frame(t), size) for t in range(clip.n_frames)]
