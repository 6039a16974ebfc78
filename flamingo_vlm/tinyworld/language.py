"""Text about tiny-world scenes and clips: captions, questions with short answers, and QA formats.

Every text comes with the id of the template that phrased it (see :mod:`.templates`, where held-out
wordings are flagged) and, for questions, a structured description of what was asked (``subject``,
``other``, ``relation``, ``objects``) so that answers can be recomputed from the scene alone.

Questions are only produced when they are unambiguous: a definite reference ("the star") is used only if
exactly one object fits it, positions and relations only when the geometry is clearly on one side (see
:func:`~.geometry.relation_truth`, :func:`~.geometry.position_is_clear`). A generator that cannot ask a
question of the requested kind about a scene returns ``None``; draw another scene then.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._random import choice, shuffled
from .geometry import (
    CLEAR_SEPARATION,
    POSITION_NAMES,
    Relation,
    position_is_clear,
    position_name,
    relation_truth,
)
from .scene import Background, BackgroundKind, Colour, Direction, ObjectSpec, Scene, SceneObject, Shape, Size
from .templates import (
    CAPTION_KINDS,
    CLIP_QUESTION_KINDS,
    QUESTION_KINDS,
    TEMPLATES,
    Template,
    templates,
)
from .video import Clip, EventKind

__all__ = [
    "CAPTION_KINDS",
    "CLIP_QUESTION_KINDS",
    "NUMBER_WORDS",
    "POSITION_PHRASES",
    "QUESTION_KINDS",
    "QA",
    "Caption",
    "caption",
    "clip_caption",
    "clip_question",
    "format_qa",
    "object_phrase",
    "question",
    "background_phrases",
    "templates",
    "unique_refs",
    "unique_track_refs",
    "vocabulary",
]

NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

# Phrases that fill template slots. They are tables (not inline strings) so that vocabulary() can list
# every word the module can write.
POSITION_PHRASES: dict[str, str] = {
    "top left": "in the top left",
    "top": "at the top",
    "top right": "in the top right",
    "left": "on the left",
    "centre": "in the centre",
    "right": "on the right",
    "bottom left": "in the bottom left",
    "bottom": "at the bottom",
    "bottom right": "in the bottom right",
}
_RELATION_PHRASES: dict[Relation, tuple[str, ...]] = {
    Relation.LEFT_OF: ("left of", "to the left of"),
    Relation.RIGHT_OF: ("right of", "to the right of"),
    Relation.ABOVE: ("above",),
    Relation.BELOW: ("below",),
}
_DIRECTION_PHRASES: dict[Direction, tuple[str, ...]] = {
    Direction.LEFT: ("left", "to the left"),
    Direction.RIGHT: ("right", "to the right"),
    Direction.UP: ("up", "upwards"),
    Direction.DOWN: ("down", "downwards"),
}
_OBJECT_NOUNS: tuple[str, ...] = ("object", "shape")
_OBJECT_NOUNS_PLURAL: tuple[str, ...] = ("objects", "shapes")
_SPLIT_SIDES: dict[str, tuple[str, str]] = {
    "left-right": ("on the left", "on the right"),
    "top-bottom": ("at the top", "at the bottom"),
}
_EVENT_ANSWERS: dict[EventKind | None, str] = {
    EventKind.MOVE: "moves {direction}",
    EventKind.COLOUR_CHANGE: "turns {colour}",
    EventKind.APPEAR: "appears",
    EventKind.DISAPPEAR: "disappears",
    None: "stays still",
}
# Glue words used when joining phrases and in composed sentences.
_GLUE: tuple[str, ...] = (
    "a",
    "an",
    "and",
    "the",
    "is",
    "are",
    "stays",
    "stay",
    "yes",
    "no",
    "speckled",
    "background",
    "fading",
    "from",
    "to",
    "gradient",
)

# (attributes) combinations tried as referring expressions, most natural first. Size alone ("the medium
# object") is left out: absolute size is hard to judge without a second object of the same kind.
_REF_ATTRS: tuple[tuple[str, ...], ...] = (
    ("shape",),
    ("colour", "shape"),
    ("colour",),
    ("size", "shape"),
    ("size", "colour"),
    ("size", "colour", "shape"),
)


@dataclass(frozen=True)
class Caption:
    """A caption; ``template_ids`` lists every template used to compose it."""

    kind: str
    text: str
    template_ids: tuple[str, ...]
    held_out: bool


@dataclass(frozen=True)
class QA:
    """A question, its short answer, and what was asked in structured form.

    ``subject`` is the object the question refers to (colour/shape/position/relation/clip questions, a
    unique reference) or the kind of object asked about (count/exists: every match counts); ``other`` and
    ``relation`` describe the reference object and relation of relation questions; ``objects`` are the
    indices (scene objects or clip tracks) the answer is about.
    """

    kind: str
    question: str
    answer: str
    template_id: str
    held_out: bool
    subject: ObjectSpec | None = None
    other: ObjectSpec | None = None
    relation: Relation | None = None
    objects: tuple[int, ...] = ()


# --- small phrase helpers ------------------------------------------------------------------------------


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def object_phrase(obj: SceneObject, *, size: bool = False, article: bool = False) -> str:
    """ "red circle", or with ``size`` "small red circle", with ``article`` "a (small) red circle"."""
    text = f"{obj.size} {obj.colour} {obj.shape}" if size else f"{obj.colour} {obj.shape}"
    return _article(text) if article else text


def _spec_phrase(spec: ObjectSpec, rng: np.random.Generator, nouns: Sequence[str] = _OBJECT_NOUNS) -> str:
    """Referring phrase without article: "small red star", "red object", "star"."""
    parts = [str(a) for a in (spec.size, spec.colour) if a is not None]
    parts.append(str(spec.shape) if spec.shape is not None else choice(rng, nouns))
    return " ".join(parts)


def _plural_phrase(spec: ObjectSpec, rng: np.random.Generator) -> str:
    """ "red triangles", "triangles", "red objects", "objects"."""
    parts = [str(spec.colour)] if spec.colour is not None else []
    parts.append(spec.shape.plural if spec.shape is not None else choice(rng, _OBJECT_NOUNS_PLURAL))
    return " ".join(parts)


def _spec_of(obj: SceneObject, attrs: Sequence[str]) -> ObjectSpec:
    return ObjectSpec(**{a: getattr(obj, a) for a in attrs})


def unique_refs(objects: Sequence[SceneObject], index: int, *, exclude: Sequence[str] = ()) -> list[ObjectSpec]:
    """Referring expressions that pick out ``objects[index]`` and nothing else, avoiding ``exclude`` attributes.

    ``exclude`` keeps the asked-about attribute out of the question ("what colour is the red star?" would
    give the answer away).
    """
    obj = objects[index]
    out = []
    for attrs in _REF_ATTRS:
        if any(a in exclude for a in attrs):
            continue
        spec = _spec_of(obj, attrs)
        if [i for i, o in enumerate(objects) if spec.matches(o)] == [index]:
            out.append(spec)
    return out


def background_phrases(background: Background) -> tuple[str, str]:
    """(noun phrase, predicate): ("a gray background", "gray"), ("a red and white background", ...)."""
    c = background.colours
    if background.kind is BackgroundKind.PLAIN:
        return f"{_article(str(c[0]))} background", str(c[0])
    if background.kind is BackgroundKind.NOISE:
        return f"a speckled {c[0]} background", f"speckled {c[0]}"
    if background.kind is BackgroundKind.SPLIT:
        side_a, side_b = _SPLIT_SIDES[background.direction]
        return _article(f"{c[0]} and {c[1]} background"), f"{c[0]} {side_a} and {c[1]} {side_b}"
    return f"a background fading from {c[0]} to {c[1]}", f"a gradient from {c[0]} to {c[1]}"


def _pick(rng: np.random.Generator, kind: str, split: str, available: set[str] | None = None) -> Template | None:
    """A random template of ``kind`` in ``split`` whose slots are all ``available`` (None: no constraint)."""
    options = [t for t in templates(kind, split) if available is None or t.fields <= available]
    return choice(rng, options) if options else None


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- captions -------------------------------------------------------------------------------------------


def _relation_sentence(scene: Scene, rng: np.random.Generator) -> str | None:
    """ "The red circle is to the left of the blue star." for a random clearly related pair, if any."""
    objs = scene.objects
    options = []
    for i in range(len(objs)):
        for j in range(len(objs)):
            if i == j:
                continue
            refs_i, refs_j = unique_refs(objs, i), unique_refs(objs, j)
            if not refs_i or not refs_j:
                continue
            for rel in Relation:
                if relation_truth(objs[i], objs[j], rel) is True:
                    options.append((i, j, rel, refs_i, refs_j))
    if not options:
        return None
    _, _, rel, refs_i, refs_j = choice(rng, options)
    a = _spec_phrase(choice(rng, refs_i), rng)
    b = _spec_phrase(choice(rng, refs_j), rng)
    return f"The {a} is {choice(rng, _RELATION_PHRASES[rel])} the {b}."


def _grouped(objects: Sequence[SceneObject], rng: np.random.Generator, size_p: float) -> str:
    """Objects with identical colour and shape grouped: "two red triangles and a small blue star"."""
    groups: dict[tuple[Colour, Shape], list[SceneObject]] = {}
    for o in objects:
        groups.setdefault((o.colour, o.shape), []).append(o)
    parts = []
    for (colour, shape), members in groups.items():
        if len(members) == 1:
            parts.append(object_phrase(members[0], size=bool(rng.random() < size_p), article=True))
        else:
            parts.append(f"{NUMBER_WORDS[len(members)]} {colour} {shape.plural}")
    return _join(parts)


def _scene_slots(scene: Scene, rng: np.random.Generator) -> dict[str, str]:
    """Every caption slot that can be filled truthfully for this scene."""
    objs = list(scene.objects)
    n = len(objs)
    size_p = 0.3  # how often an object phrase mentions size: enough to teach the words, not on every object
    order = shuffled(rng, objs)
    slots: dict[str, str] = {}
    slots["objects"] = _join([object_phrase(o, size=bool(rng.random() < size_p), article=True) for o in order])
    slots["objects_grouped"] = _grouped(order, rng, size_p)
    positioned = []
    for o in order:
        phrase = object_phrase(o, size=bool(rng.random() < size_p), article=True)
        # Borderline positions are left unsaid rather than guessed.
        if position_is_clear(o):
            phrase += " " + POSITION_PHRASES[position_name(o)]
        positioned.append(phrase)
    slots["objects_positioned"] = _join(positioned)
    by_x = sorted(objs, key=lambda o: o.x)
    if n >= 2 and all(b.x - a.x >= CLEAR_SEPARATION for a, b in zip(by_x, by_x[1:], strict=False)):
        slots["objects_ltr"] = _join([object_phrase(o, article=True) for o in by_x])
    slots["count_word"] = NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)
    slots["is_are"] = "is" if n == 1 else "are"
    slots["object_noun"] = choice(rng, _OBJECT_NOUNS if n == 1 else _OBJECT_NOUNS_PLURAL)
    slots["background"], slots["background_desc"] = background_phrases(scene.background)
    rel = _relation_sentence(scene, rng)
    if rel is not None:
        slots["relation_sentence"] = rel
    return slots


def caption(scene: Scene, rng: np.random.Generator, *, kind: str | None = None, split: str = "train") -> Caption:
    """A caption of ``scene``: ``kind`` "caption_short" (a fragment) or "caption_long" (sentences);
    None picks one at random. Only templates of ``split`` are used."""
    if not scene.objects:
        raise ValueError("cannot caption an empty scene")
    kind = kind if kind is not None else choice(rng, CAPTION_KINDS)
    if kind not in CAPTION_KINDS:
        raise ValueError(f"unknown caption kind {kind!r}")
    slots = _scene_slots(scene, rng)
    tpl = _pick(rng, kind, split, set(slots))
    if tpl is None:  # pragma: no cover - every kind has a template needing only always-present slots
        raise RuntimeError(f"no {kind} template fits this scene in split {split}")
    text = tpl.fill(**slots)
    if kind == "caption_long":
        text = _capitalise(text)
    return Caption(kind, text, (tpl.id,), tpl.held_out)


# --- scene questions ------------------------------------------------------------------------------------


def _qa(kind: str, tpl: Template, slots: dict[str, str], answer: str, **fields) -> QA:
    return QA(kind, tpl.fill(**slots), answer, tpl.id, tpl.held_out, **fields)


def _attribute_question(scene, rng, split, kind: str, attr: str) -> QA | None:
    """ "what colour is the star?" / "what shape is the red object?"."""
    objs = scene.objects
    options = [(i, r) for i in range(len(objs)) for r in unique_refs(objs, i, exclude=(attr,))]
    if not options:
        return None
    i, ref = choice(rng, options)
    tpl = _pick(rng, kind, split)
    # "what shape is the red shape?" reads badly, so shape questions always say "object".
    ref_text = _spec_phrase(ref, rng, ("object",) if attr == "shape" else _OBJECT_NOUNS)
    return _qa(kind, tpl, {"ref": ref_text}, str(getattr(objs[i], attr)), subject=ref, objects=(i,))


def _count_question(scene, rng, split) -> QA | None:
    """ "how many triangles are there?" -> "2" (also colours, colour+shape, all objects; sometimes 0).

    The count is drawn evenly from the counts the scene's objects give (under any of the four ways of naming
    them), then a name with that count: most kinds occur once in a scene, so naming a random object made "1"
    the answer seven times in ten, a guess that needs no looking (the bundled model of 2026-11-29 said "1" to
    nearly every count question)."""
    objs = scene.objects
    forms = [("shape",), ("colour",), ("colour", "shape"), ()]
    form = choice(rng, forms, p=[0.4, 0.25, 0.25, 0.1])
    if form and rng.random() < 0.15:
        # Absent kinds teach that "0" is an answer too.
        spec = ObjectSpec(
            shape=choice(rng, list(Shape)) if "shape" in form else None,
            colour=choice(rng, list(Colour)) if "colour" in form else None,
        )
    else:
        by_count: dict[int, list[ObjectSpec]] = {}  # count -> names (one per object and form) with that count
        for any_form in forms:  # counting by colour, or all objects, gives counts above 1 more often
            for obj in objs:
                name = _spec_of(obj, any_form)
                by_count.setdefault(len(scene.matching(name)), []).append(name)
        spec = choice(rng, by_count[choice(rng, sorted(by_count))])
    matches = tuple(scene.matching(spec))
    tpl = _pick(rng, "count", split)
    return _qa("count", tpl, {"plural": _plural_phrase(spec, rng)}, str(len(matches)), subject=spec, objects=matches)


def _exists_question(scene, rng, split) -> QA | None:
    """ "is there a green heart?" -> yes/no, with yes and no equally likely."""
    objs = scene.objects
    form = choice(rng, [("shape",), ("colour", "shape"), ("colour",)], p=[0.35, 0.5, 0.15])
    want_yes = bool(rng.random() < 0.5)
    if want_yes:
        spec = _spec_of(choice(rng, objs), form)
    else:
        # Negatives often share an attribute with something present ("a blue star" next to a red star),
        # so that "no" needs both attributes checked.
        for _ in range(50):
            base = choice(rng, objs)
            spec = ObjectSpec(
                shape=(base.shape if rng.random() < 0.5 else choice(rng, list(Shape))) if "shape" in form else None,
                colour=(base.colour if rng.random() < 0.5 else choice(rng, list(Colour))) if "colour" in form else None,
            )
            if not scene.matching(spec):
                break
        else:
            return None
    matches = tuple(scene.matching(spec))
    tpl = _pick(rng, "exists", split)
    a_desc = _article(_spec_phrase(spec, rng))
    return _qa("exists", tpl, {"a_desc": a_desc}, "yes" if matches else "no", subject=spec, objects=matches)


def _position_question(scene, rng, split) -> QA | None:
    """ "where is the square?" -> "top left" (only for centres clearly inside one grid cell)."""
    objs = scene.objects
    options = [(i, r) for i, o in enumerate(objs) if position_is_clear(o) for r in unique_refs(objs, i)]
    if not options:
        return None
    i, ref = choice(rng, options)
    tpl = _pick(rng, "position", split)
    return _qa("position", tpl, {"ref": _spec_phrase(ref, rng)}, position_name(objs[i]), subject=ref, objects=(i,))


def _relation_yesno_question(scene, rng, split) -> QA | None:
    """ "is the circle left of the star?" -> yes/no, balanced, never for borderline geometry."""
    objs = scene.objects
    by_answer: dict[bool, list] = {True: [], False: []}
    for i in range(len(objs)):
        refs_i = unique_refs(objs, i)
        if not refs_i:
            continue
        for j in range(len(objs)):
            if i == j:
                continue
            refs_j = unique_refs(objs, j)
            if not refs_j:
                continue
            for rel in Relation:
                truth = relation_truth(objs[i], objs[j], rel)
                if truth is not None:
                    by_answer[truth].append((i, j, rel, refs_i, refs_j))
    want = bool(rng.random() < 0.5)
    options = by_answer[want] or by_answer[not want]
    if not options:
        return None
    i, j, rel, refs_i, refs_j = choice(rng, options)
    ref, ref2 = choice(rng, refs_i), choice(rng, refs_j)
    tpl = _pick(rng, "relation_yesno", split)
    slots = {"ref": _spec_phrase(ref, rng), "ref2": _spec_phrase(ref2, rng), "rel": choice(rng, _RELATION_PHRASES[rel])}
    answer = "yes" if relation_truth(objs[i], objs[j], rel) else "no"
    return _qa("relation_yesno", tpl, slots, answer, subject=ref, other=ref2, relation=rel, objects=(i, j))


def _relation_what_question(scene, rng, split) -> QA | None:
    """ "what is left of the star?" -> "red circle": only if exactly one object is clearly there and every
    other object is clearly not."""
    objs = scene.objects
    options = []
    for j in range(len(objs)):
        refs_j = unique_refs(objs, j)
        if not refs_j:
            continue
        for rel in Relation:
            truths = {i: relation_truth(objs[i], objs[j], rel) for i in range(len(objs)) if i != j}
            hits = [i for i, t in truths.items() if t is True]
            if len(hits) == 1 and all(t is not None for t in truths.values()):
                options.append((hits[0], j, rel, refs_j))
    if not options:
        return None
    i, j, rel, refs_j = choice(rng, options)
    ref2 = choice(rng, refs_j)
    tpl = _pick(rng, "relation_what", split)
    slots = {"ref2": _spec_phrase(ref2, rng), "rel": choice(rng, _RELATION_PHRASES[rel])}
    return _qa("relation_what", tpl, slots, object_phrase(objs[i]), other=ref2, relation=rel, objects=(i,))


def _background_question(scene, rng, split) -> QA | None:
    """ "what colour is the background?" for one-colour (plain or speckled) backgrounds."""
    if scene.background.kind not in (BackgroundKind.PLAIN, BackgroundKind.NOISE):
        return None
    tpl = _pick(rng, "background", split)
    return _qa("background", tpl, {}, str(scene.background.colours[0]))


_SCENE_QUESTIONS = {
    "colour": lambda s, r, sp: _attribute_question(s, r, sp, "colour", "colour"),
    "shape": lambda s, r, sp: _attribute_question(s, r, sp, "shape", "shape"),
    "count": _count_question,
    "position": _position_question,
    "exists": _exists_question,
    "relation_yesno": _relation_yesno_question,
    "relation_what": _relation_what_question,
    "background": _background_question,
}


def question(scene: Scene, rng: np.random.Generator, *, kind: str | None = None, split: str = "train") -> QA | None:
    """A question about ``scene`` with its short answer, or None if no unambiguous one of ``kind`` exists.

    ``kind`` is one of :data:`QUESTION_KINDS`; None tries the kinds in random order. Answers: colour and
    shape names, counts as digits, position names ("top left"), "yes"/"no", "<colour> <shape>" for
    "what is left of ...". Only templates of ``split`` are used.
    """
    if not scene.objects:
        return None
    kinds = [kind] if kind is not None else shuffled(rng, list(QUESTION_KINDS))
    for k in kinds:
        if k not in _SCENE_QUESTIONS:
            raise ValueError(f"unknown question kind {k!r}")
        qa = _SCENE_QUESTIONS[k](scene, rng, split)
        if qa is not None:
            return qa
    return None


# --- clips ----------------------------------------------------------------------------------------------


def _track_matches(clip: Clip, track: int, spec: ObjectSpec) -> bool:
    """A spec fits a track if it fits the object in some frame (so a colour-changing square is "the red
    square" and also "the green square": both are then taken, to keep references unique)."""
    return any(spec.matches(o) for o in clip.track_objects(track))


def unique_track_refs(clip: Clip, track: int) -> list[ObjectSpec]:
    """References that pick out ``track`` and no other track. A colour-changing object is referred to by its
    colour *before* the change only ("the red square" that turns green)."""
    first = clip.track_objects(track)[0]
    out = []
    for attrs in _REF_ATTRS:
        spec = _spec_of(first, attrs)
        if [t for t in range(len(clip.tracks)) if _track_matches(clip, t, spec)] == [track]:
            out.append(spec)
    return out


def _event_clause(clip: Clip, event, rng: np.random.Generator, split: str) -> tuple[str, Template]:
    obj = clip.track_objects(event.track)[0]
    size = bool(rng.random() < 0.3)
    slots = {
        "a_obj": object_phrase(obj, size=size, article=True),
        "a_obj_plain": _article(f"{obj.size} {obj.shape}" if size else str(obj.shape)),
    }
    if event.kind is EventKind.MOVE:
        slots["dir_phrase"] = choice(rng, _DIRECTION_PHRASES[event.direction])
        kind = "clip_caption_move"
    elif event.kind is EventKind.COLOUR_CHANGE:
        slots["from_colour"], slots["to_colour"] = str(event.from_colour), str(event.to_colour)
        kind = "clip_caption_colour"
    elif event.kind is EventKind.APPEAR:
        kind = "clip_caption_appear"
    else:
        kind = "clip_caption_disappear"
    tpl = _pick(rng, kind, split)
    return tpl.fill(**slots), tpl


def clip_caption(clip: Clip, rng: np.random.Generator, *, split: str = "train") -> Caption:
    """A caption of what happens in ``clip``: "a red circle moves to the left while a blue star stays still"."""
    if not clip.events:
        raise ValueError("clip has no events to describe")
    clauses = [_event_clause(clip, e, rng, split) for e in shuffled(rng, list(clip.events))]
    moving = {e.track for e in clip.events}
    static = [clip.track_objects(t)[0] for t in range(len(clip.tracks)) if t not in moving]
    slots = {"events": _join([c for c, _ in clauses]), "background": background_phrases(clip.background)[0]}
    if static:
        slots["static"] = _join([object_phrase(o, article=True) for o in static])
        slots["stay"] = "stays" if len(static) == 1 else "stay"
    frame = _pick(rng, "clip_caption", split, set(slots))
    used = [frame, *(t for _, t in clauses)]
    return Caption("clip_caption", frame.fill(**slots), tuple(t.id for t in used), any(t.held_out for t in used))


def _event_answer(event) -> str:
    if event is None:
        return _EVENT_ANSWERS[None]
    return _EVENT_ANSWERS[event.kind].format(direction=event.direction, colour=event.to_colour)


def _clip_ref_question(clip, rng, split, kind: str, event_kind: EventKind | None) -> QA | None:
    """Questions about one referred-to track: its move direction, its new colour, or what happens to it."""
    if event_kind is None:
        tracks = list(range(len(clip.tracks)))
    else:
        tracks = [e.track for e in clip.events if e.kind is event_kind]
    options = [(t, r) for t in tracks for r in unique_track_refs(clip, t)]
    if not options:
        return None
    t, ref = choice(rng, options)
    event = clip.event_for(t)
    if kind == "clip_move":
        answer = str(event.direction)
    elif kind == "clip_colour":
        answer = str(event.to_colour)
    else:
        answer = _event_answer(event)
    tpl = _pick(rng, kind, split)
    return _qa(kind, tpl, {"ref": _spec_phrase(ref, rng)}, answer, subject=ref, objects=(t,))


def _clip_which_question(clip, rng, split, kind: str, event_kind: EventKind) -> QA | None:
    """ "what appears?" / "what disappears?" -> "red circle", when exactly one object does."""
    hits = [e.track for e in clip.events if e.kind is event_kind]
    if len(hits) != 1:
        return None
    tpl = _pick(rng, kind, split)
    return _qa(kind, tpl, {}, object_phrase(clip.track_objects(hits[0])[0]), objects=(hits[0],))


_CLIP_QUESTIONS = {
    "clip_move": lambda c, r, sp: _clip_ref_question(c, r, sp, "clip_move", EventKind.MOVE),
    "clip_colour": lambda c, r, sp: _clip_ref_question(c, r, sp, "clip_colour", EventKind.COLOUR_CHANGE),
    "clip_appear": lambda c, r, sp: _clip_which_question(c, r, sp, "clip_appear", EventKind.APPEAR),
    "clip_disappear": lambda c, r, sp: _clip_which_question(c, r, sp, "clip_disappear", EventKind.DISAPPEAR),
    "clip_event": lambda c, r, sp: _clip_ref_question(c, r, sp, "clip_event", None),
}


def clip_question(clip: Clip, rng: np.random.Generator, *, kind: str | None = None, split: str = "train") -> QA | None:
    """A question about ``clip`` with its short answer, or None if no unambiguous one of ``kind`` exists.

    Kinds (:data:`CLIP_QUESTION_KINDS`): "clip_move" -> "left"; "clip_colour" -> "green"; "clip_appear" /
    "clip_disappear" -> "red circle"; "clip_event" ("what happens to the square?") -> "moves left",
    "turns green", "appears", "disappears" or "stays still". None tries the kinds in random order.
    """
    kinds = [kind] if kind is not None else shuffled(rng, list(CLIP_QUESTION_KINDS))
    for k in kinds:
        if k not in _CLIP_QUESTIONS:
            raise ValueError(f"unknown clip question kind {k!r}")
        qa = _CLIP_QUESTIONS[k](clip, rng, split)
        if qa is not None:
            return qa
    return None


# --- formats and vocabulary ------------------------------------------------------------------------------


def format_qa(qa: QA, rng: np.random.Generator, *, split: str = "train") -> tuple[str, str]:
    """``qa`` written in a random output format of ``split`` ("Question: ... Answer: ..."); returns
    ``(text, template_id)``."""
    tpl = _pick(rng, "qa_format", split)
    return tpl.fill(question=qa.question, answer=qa.answer), tpl.id


_WORD = re.compile(r"[a-z]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def vocabulary() -> frozenset[str]:
    """Every word (lowercase letters only) that this module can write, in any template or answer."""
    words: set[str] = set()
    for t in TEMPLATES:
        words |= _words(re.sub(r"\{[^}]*\}", " ", t.text))
    pieces: list[str] = [*NUMBER_WORDS, *_OBJECT_NOUNS, *_OBJECT_NOUNS_PLURAL, *_GLUE]
    pieces += [str(c) for c in Colour] + [str(s) for s in Size] + [str(d) for d in Direction]
    pieces += [str(s) for s in Shape] + [s.plural for s in Shape]
    pieces += [p for row in POSITION_NAMES for p in row] + list(POSITION_PHRASES.values())
    pieces += [p for ps in _RELATION_PHRASES.values() for p in ps]
    pieces += [p for ps in _DIRECTION_PHRASES.values() for p in ps]
    pieces += [p for ps in _SPLIT_SIDES.values() for p in ps]
    pieces += list(_EVENT_ANSWERS.values())
    for p in pieces:
        words |= _words(re.sub(r"\{[^}]*\}", " ", p))
    return frozenset(words)
