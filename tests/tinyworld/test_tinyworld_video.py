"""Clips: determinism, events visible in the rendered pixels, clip captions and questions."""

from __future__ import annotations

import re

import numpy as np
import pytest

from flamingo_vlm.tinyworld import (
    CLIP_QUESTION_KINDS,
    BackgroundKind,
    Colour,
    Direction,
    EventKind,
    clip_caption,
    clip_question,
    render_clip,
    sample_clip,
    visible_fractions,
)

PLAIN = [BackgroundKind.PLAIN]


def _mask(frame, colour: Colour, bg: Colour) -> np.ndarray:
    arr = np.asarray(frame, dtype=float)
    return np.linalg.norm(arr - colour.rgb, axis=-1) < np.linalg.norm(arr - bg.rgb, axis=-1)


def _single_clip(seed: int, kind: EventKind, **kw):
    rng = np.random.default_rng(seed)
    return sample_clip(rng, event_kinds=[kind], min_objects=1, max_objects=1, background_kinds=PLAIN, **kw)


def test_same_seed_same_clip_and_frames():
    def run(seed):
        rng = np.random.default_rng(seed)
        clips = [sample_clip(rng) for _ in range(10)]
        return clips, [b"".join(f.tobytes() for f in render_clip(c)) for c in clips]

    a, b = run(5), run(5)
    assert a[0] == b[0] and a[1] == b[1]
    assert run(6)[0] != a[0]


def test_default_clip_has_eight_frames_and_one_event():
    clip = sample_clip(np.random.default_rng(0))
    frames = render_clip(clip)
    assert clip.n_frames == 8 and len(frames) == 8 and len(clip.events) == 1
    assert all(f.size == (64, 64) and f.mode == "RGB" for f in frames)
    assert len(render_clip(sample_clip(np.random.default_rng(0), n_frames=4))) == 4


@pytest.mark.parametrize("direction", list(Direction))
def test_moving_object_moves_monotonically_in_pixels(direction):
    for seed in range(5):
        clip = _single_clip(seed, EventKind.MOVE, directions=[direction])
        (event,) = clip.events
        assert event.kind is EventKind.MOVE and event.direction is direction
        obj = clip.track_objects(0)[0]
        bg = clip.background.colours[0]
        centres = []
        for frame in render_clip(clip):
            ys, xs = np.nonzero(_mask(frame, obj.colour, bg))
            centres.append((xs.mean(), ys.mean()))
        xs, ys = np.array(centres).T
        dx, dy = direction.vector
        along, across = (xs, ys) if dx else (ys, xs)
        sign = dx + dy
        assert np.all(sign * np.diff(along) > 0.5), (direction, along)  # steady motion, > half a pixel per frame
        assert np.ptp(across) < 0.5  # no drift sideways
        assert sign * (along[-1] - along[0]) >= 0.25 * 64 - 1


def test_colour_change_visible_between_first_and_last_frame():
    for seed in range(10):
        clip = _single_clip(seed, EventKind.COLOUR_CHANGE)
        (event,) = clip.events
        assert event.from_colour != event.to_colour
        obj = clip.track_objects(0)[0]
        frames = [np.asarray(f, dtype=float) for f in render_clip(clip)]
        cx, cy = int(obj.x * 64), int(obj.y * 64)
        assert np.allclose(frames[0][cy, cx], event.from_colour.rgb, atol=1)
        assert np.allclose(frames[-1][cy, cx], event.to_colour.rgb, atol=1)
        # The change happens at the labelled frame.
        assert np.allclose(frames[event.frame - 1][cy, cx], event.from_colour.rgb, atol=1)
        assert np.allclose(frames[event.frame][cy, cx], event.to_colour.rgb, atol=1)


@pytest.mark.parametrize("kind", [EventKind.APPEAR, EventKind.DISAPPEAR])
def test_appearing_and_disappearing_objects(kind):
    for seed in range(10):
        clip = _single_clip(seed, kind)
        (event,) = clip.events
        obj = clip.track_objects(0)[0]
        bg = clip.background.colours[0]
        present = [int(_mask(f, obj.colour, bg).sum()) for f in render_clip(clip)]
        absent_at, present_at = (0, -1) if kind is EventKind.APPEAR else (-1, 0)
        assert present[absent_at] == 0 and present[present_at] > 20
        # Presence switches exactly once, at the labelled frame.
        flags = [p > 0 for p in present]
        switches = [t for t in range(1, len(flags)) if flags[t] != flags[t - 1]]
        assert switches == [event.frame]


def test_every_frame_keeps_objects_recognisable():
    rng = np.random.default_rng(7)
    for _ in range(100):
        clip = sample_clip(rng, n_events=2, max_objects=4)
        assert len({e.track for e in clip.events}) == 2
        for scene in clip.frames():
            if scene.objects:
                assert min(visible_fractions(scene.objects)) >= 0.75


def test_event_kind_control():
    rng = np.random.default_rng(8)
    kinds = {sample_clip(rng, event_kinds=[EventKind.APPEAR]).events[0].kind for _ in range(10)}
    assert kinds == {EventKind.APPEAR}
    kinds = {e.kind for _ in range(60) for e in sample_clip(rng).events}
    assert kinds == set(EventKind)


# --- clip language ----------------------------------------------------------------------------------------


def _track_fits(clip, t, spec) -> bool:
    return any(
        all(getattr(spec, a) is None or getattr(o, a) == getattr(spec, a) for a in ("shape", "colour", "size"))
        for o in clip.tracks[t]
        if o is not None
    )


def _check_clip_qa(clip, qa) -> None:
    events = {e.track: e for e in clip.events}
    if qa.kind in ("clip_move", "clip_colour", "clip_event"):
        hits = [t for t in range(len(clip.tracks)) if _track_fits(clip, t, qa.subject)]
        assert len(hits) == 1, qa  # the reference picks out one object over the whole clip
        ev = events.get(hits[0])
        if qa.kind == "clip_move":
            assert ev.kind is EventKind.MOVE and qa.answer == ev.direction.value
        elif qa.kind == "clip_colour":
            assert ev.kind is EventKind.COLOUR_CHANGE and qa.answer == ev.to_colour.value
            assert qa.subject.colour in (None, ev.from_colour)
        else:
            if ev is None:
                expected = "stays still"
            elif ev.kind is EventKind.MOVE:
                expected = f"moves {ev.direction.value}"
            elif ev.kind is EventKind.COLOUR_CHANGE:
                expected = f"turns {ev.to_colour.value}"
            else:
                expected = "appears" if ev.kind is EventKind.APPEAR else "disappears"
            assert qa.answer == expected
    else:
        kind = EventKind.APPEAR if qa.kind == "clip_appear" else EventKind.DISAPPEAR
        hits = [e.track for e in clip.events if e.kind is kind]
        assert len(hits) == 1
        obj = next(o for o in clip.tracks[hits[0]] if o is not None)
        assert qa.answer == f"{obj.colour.value} {obj.shape.value}"


def test_clip_answers_recompute_from_events():
    rng = np.random.default_rng(9)
    seen = set()
    for _ in range(400):
        clip = sample_clip(rng, n_events=int(rng.integers(1, 3)))
        for kind in CLIP_QUESTION_KINDS:
            qa = clip_question(clip, rng, kind=kind)
            if qa is not None:
                seen.add(qa.kind)
                _check_clip_qa(clip, qa)
    assert seen == set(CLIP_QUESTION_KINDS)


def test_clip_captions_describe_the_events():
    rng = np.random.default_rng(10)
    for _ in range(300):
        clip = sample_clip(rng)
        cap = clip_caption(clip, rng, split="all")
        words = set(re.findall(r"[a-z]+", cap.text))
        (event,) = clip.events
        obj = clip.track_objects(event.track)[0]
        assert obj.shape.value in words
        if event.kind is EventKind.MOVE:
            assert words & {event.direction.value, event.direction.value + "wards"}
        elif event.kind is EventKind.COLOUR_CHANGE:
            assert event.to_colour.value in words
        elif event.kind is EventKind.APPEAR:
            assert words & {"appears", "shows", "comes"}
        else:
            assert words & {"disappears", "vanishes", "goes"}


def test_clip_text_respects_split_and_is_deterministic():
    def texts(seed, split):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(100):
            clip = sample_clip(rng)
            out.append(clip_caption(clip, rng, split=split))
            out.append(clip_question(clip, rng, split=split))
        return out

    train = texts(1, "train")
    assert train == texts(1, "train")
    assert not any(t.held_out for t in train if t is not None)
    held = [t for t in texts(1, "heldout") if t is not None]
    assert held and all(t.held_out for t in held)
