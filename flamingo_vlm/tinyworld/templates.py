"""Registry of the text templates used by :mod:`flamingo_vlm.tinyworld.language`.

Each template has a stable id, a kind (which question or caption it phrases), a ``str.format`` text with
named slots, and a ``held_out`` flag. Held-out templates are never used for ``split="train"``, so a dataset
builder can train on some wordings and output formats and evaluate on others. Every kind has at least two
training templates and at least one held-out template.

Scene and clip questions have many training wordings (questions, requests such as "tell me ...", the key word
first or last) because a model that saw three wordings per kind learns the wording's first words, not its key
word: the bundled model of 2026-11-29 answered "the teal object has what shape?" with "yes". With the key word
in many places, a held-out wording is a new sentence made of known parts, as a held-out VQAv2 question is for
an LM pretrained on the web. Each held-out wording keeps a piece (text between its slots) that no training
wording contains, and training text never contains such a piece (``datasets.heldout_fragments``); yet every
word of a held-out question occurs in some training wording, and a held-out question crosses two training
ones: "the {ref} has what shape?" is "the {ref} has what colour?" (colour) with the key word of "the {ref} is
what shape?" (shape), and "what is the number of {plural}?" joins "what is the count of {plural}?" and "tell me
the number of {plural}.". When "number", "region" and "contain" were in no training question, the bundled
model answered "what is the number of circles?" right 3% of the time (55% in training wordings) and its bare
LM, asked about a scene described in words, 25% (60%).

Slots (filled by :mod:`.language`):

* scenes: ``objects`` (list of object phrases), ``objects_grouped`` (same, identical objects grouped with a
  number word), ``objects_positioned`` (with position phrases), ``objects_ltr`` (left to right),
  ``count_word``/``is_are``/``object_noun`` ("two"/"are"/"objects"), ``background`` (noun phrase),
  ``background_desc`` (predicate), ``relation_sentence``;
* questions: ``ref``/``ref2`` (referring expressions without article), ``plural``, ``a_desc``, ``rel``;
* clips: ``a_obj``, ``a_obj_plain`` (no colour), ``dir_phrase``, ``from_colour``, ``to_colour``, ``events``,
  ``static``, ``stay``;
* formats: ``question``, ``answer``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cached_property

__all__ = [
    "CAPTION_KINDS",
    "CLIP_CAPTION_KINDS",
    "CLIP_QUESTION_KINDS",
    "FORMAT_KINDS",
    "QUESTION_KINDS",
    "SPLITS",
    "TEMPLATES",
    "Template",
    "template",
    "templates",
]

SPLITS = ("train", "heldout", "all")


@dataclass(frozen=True)
class Template:
    """One wording: ``text`` is a ``str.format`` string whose slots are listed by :attr:`fields`."""

    id: str
    kind: str
    text: str
    held_out: bool = False

    @cached_property
    def fields(self) -> frozenset[str]:
        """Names of the slots in :attr:`text`."""
        return frozenset(name for _, name, _, _ in string.Formatter().parse(self.text) if name)

    def fill(self, **slots: str) -> str:
        """The text with its slots filled (extra slots are ignored)."""
        return self.text.format(**{k: slots[k] for k in self.fields})


def _t(id_: str, kind: str, text: str, held_out: bool = False) -> Template:
    return Template(id_, kind, text, held_out)


_H = True  # marks held-out templates below, to keep the table readable

TEMPLATES: tuple[Template, ...] = (
    # --- scene captions -------------------------------------------------------------------------------
    _t("cap_short.on", "caption_short", "{objects} on {background}"),
    _t("cap_short.bare", "caption_short", "{objects}"),
    _t("cap_short.picture", "caption_short", "a picture of {objects}"),
    _t("cap_short.grouped", "caption_short", "{objects_grouped} on {background}"),
    _t("cap_short.image_of", "caption_short", "an image of {objects} on {background}", _H),
    _t("cap_short.against", "caption_short", "{objects_grouped} against {background}", _H),
    _t(
        "cap_long.there",
        "caption_long",
        "There {is_are} {count_word} {object_noun}: {objects_positioned}. The background is {background_desc}.",
    ),
    _t("cap_long.count_on", "caption_long", "{count_word} {object_noun} on {background}: {objects_positioned}."),
    _t("cap_long.ltr", "caption_long", "From left to right: {objects_ltr}. The background is {background_desc}."),
    _t("cap_long.relation", "caption_long", "This picture shows {objects} on {background}. {relation_sentence}"),
    _t("cap_long.contains", "caption_long", "The image contains {objects_grouped}, on {background}."),
    _t(
        "cap_long.we_see",
        "caption_long",
        "We see {count_word} {object_noun} on {background}, namely {objects_positioned}.",
        _H,
    ),
    _t(
        "cap_long.in_this",
        "caption_long",
        "In this image you can see {objects_grouped}. {relation_sentence}",
        _H,
    ),
    # --- scene questions -------------------------------------------------------------------------------
    _t("colour.what_colour", "colour", "what colour is the {ref}?"),
    _t("colour.colour_of", "colour", "what is the colour of the {ref}?"),
    _t("colour.which_colour", "colour", "which colour does the {ref} have?"),
    _t("colour.tell_me", "colour", "tell me the colour of the {ref}."),
    _t("colour.has_which", "colour", "the {ref} has which colour?"),
    _t("colour.bare", "colour", "colour of the {ref}?"),
    _t("colour.of_what", "colour", "of what colour is the {ref}?"),
    _t("colour.has_what", "colour", "the {ref} has what colour?"),
    _t("colour.does_have", "colour", "what colour does the {ref} have?"),
    _t("colour.is_what", "colour", "the {ref} is what colour?", _H),
    _t("shape.what_shape", "shape", "what shape is the {ref}?"),
    _t("shape.shape_of", "shape", "what is the shape of the {ref}?"),
    _t("shape.which_shape", "shape", "which shape does the {ref} have?"),
    _t("shape.tell_me", "shape", "tell me the shape of the {ref}."),
    _t("shape.is_which", "shape", "the {ref} is which shape?"),
    _t("shape.bare", "shape", "shape of the {ref}?"),
    _t("shape.of_what", "shape", "of what shape is the {ref}?"),
    _t("shape.is_what", "shape", "the {ref} is what shape?"),
    _t("shape.does_have", "shape", "what shape does the {ref} have?"),
    _t("shape.has_what", "shape", "the {ref} has what shape?", _H),
    _t("count.how_many", "count", "how many {plural} are there?"),
    _t("count.can_see", "count", "how many {plural} can you see?"),
    _t("count.in_image", "count", "how many {plural} are in the image?"),
    _t("count.count_the", "count", "count the {plural}."),
    _t("count.picture_show", "count", "how many {plural} does the picture show?"),
    _t("count.tell_me", "count", "tell me how many {plural} there are."),
    _t("count.tell_number", "count", "tell me the number of {plural}."),
    _t("count.count_of", "count", "what is the count of {plural}?"),
    _t("count.number_of", "count", "what is the number of {plural}?", _H),
    _t("position.where", "position", "where is the {ref}?"),
    _t("position.located", "position", "where is the {ref} located?"),
    _t("position.which_part", "position", "in which part of the image is the {ref}?"),
    _t("position.part_in", "position", "which part of the image is the {ref} in?"),
    _t("position.tell_me", "position", "tell me where the {ref} is."),
    _t("position.is_in_which", "position", "the {ref} is in which part of the picture?"),
    _t("position.part_has", "position", "which part of the picture has the {ref}?"),
    _t("position.region_in", "position", "which region is the {ref} in?"),
    _t("position.part_contains", "position", "which part of the image contains the {ref}?"),
    _t("position.region", "position", "which region of the image contains the {ref}?", _H),
    _t("exists.is_there", "exists", "is there {a_desc}?"),
    _t("exists.in_image", "exists", "is there {a_desc} in the image?"),
    _t("exists.can_see", "exists", "can you see {a_desc}?"),
    _t("exists.do_you_see", "exists", "do you see {a_desc}?"),
    _t("exists.image_show", "exists", "does the image show {a_desc}?"),
    _t("exists.in_picture", "exists", "is {a_desc} in the picture?"),
    _t("exists.image_have", "exists", "does the image have {a_desc}?"),
    _t("exists.image_contain", "exists", "does the image contain {a_desc}?"),
    _t("exists.picture_have", "exists", "does the picture have {a_desc}?"),
    _t("exists.would_find", "exists", "would you find {a_desc} in the image?"),
    _t("exists.contain", "exists", "does the picture contain {a_desc}?", _H),
    _t("rel_yn.is", "relation_yesno", "is the {ref} {rel} the {ref2}?"),
    _t("rel_yn.located", "relation_yesno", "is the {ref} located {rel} the {ref2}?"),
    _t("rel_yn.do_you_think", "relation_yesno", "do you think the {ref} is {rel} the {ref2}?"),
    _t("rel_yn.tell_me_if", "relation_yesno", "tell me if the {ref} is {rel} the {ref2}."),
    _t("rel_yn.is_it_true", "relation_yesno", "is it true that the {ref} is {rel} the {ref2}?"),
    _t("rel_yn.would_say", "relation_yesno", "would you say the {ref} is {rel} the {ref2}?", _H),
    _t("rel_what.what_is", "relation_what", "what is {rel} the {ref2}?"),
    _t("rel_what.which_object", "relation_what", "which object is {rel} the {ref2}?"),
    _t("rel_what.tell_me", "relation_what", "tell me what is {rel} the {ref2}."),
    _t("rel_what.what_object", "relation_what", "what object is {rel} the {ref2}?"),
    _t("rel_what.say_which", "relation_what", "say which object is {rel} the {ref2}."),
    _t("rel_what.name_what", "relation_what", "name what is {rel} the {ref2}."),
    _t("rel_what.tell_object", "relation_what", "tell me the object {rel} the {ref2}."),
    _t("rel_what.name", "relation_what", "name the object {rel} the {ref2}.", _H),
    _t("background.what_colour", "background", "what colour is the background?"),
    _t("background.bg_colour", "background", "what is the background colour?"),
    _t("background.tell_me", "background", "tell me the colour of the background."),
    _t("background.has_which", "background", "the background has which colour?"),
    _t("background.bare", "background", "colour of the background?"),
    _t("background.which_colour", "background", "which colour does the background have?"),
    _t("background.has_what", "background", "the background has what colour?"),
    _t("background.is_what", "background", "the background is what colour?", _H),
    # --- clip captions (one clause per event; the clip_caption kind frames the clauses) ------------------
    _t("clip_cap.frame_bare", "clip_caption", "{events}"),
    _t("clip_cap.frame_on", "clip_caption", "{events} on {background}"),
    _t("clip_cap.frame_still", "clip_caption", "{events} while {static} {stay} still"),
    _t("clip_cap.frame_video", "clip_caption", "in this video, {events}", _H),
    _t("clip_cap.moves", "clip_caption_move", "{a_obj} moves {dir_phrase}"),
    _t("clip_cap.slides", "clip_caption_move", "{a_obj} slides {dir_phrase}"),
    _t("clip_cap.travels", "clip_caption_move", "{a_obj} travels {dir_phrase}", _H),
    _t("clip_cap.changes", "clip_caption_colour", "{a_obj_plain} changes from {from_colour} to {to_colour}"),
    _t("clip_cap.turns", "clip_caption_colour", "{a_obj} turns {to_colour}"),
    _t("clip_cap.becomes", "clip_caption_colour", "{a_obj} becomes {to_colour}", _H),
    _t("clip_cap.appears", "clip_caption_appear", "{a_obj} appears"),
    _t("clip_cap.shows_up", "clip_caption_appear", "{a_obj} shows up"),
    _t("clip_cap.comes_into_view", "clip_caption_appear", "{a_obj} comes into view", _H),
    _t("clip_cap.disappears", "clip_caption_disappear", "{a_obj} disappears"),
    _t("clip_cap.vanishes", "clip_caption_disappear", "{a_obj} vanishes"),
    _t("clip_cap.goes_out", "clip_caption_disappear", "{a_obj} goes out of view", _H),
    # --- clip questions --------------------------------------------------------------------------------
    _t("clip_move.which_way", "clip_move", "which way does the {ref} move?"),
    _t("clip_move.direction", "clip_move", "in which direction does the {ref} move?"),
    _t("clip_move.where_go", "clip_move", "where does the {ref} go?"),
    _t("clip_move.moves_which", "clip_move", "the {ref} moves which way?"),
    _t("clip_move.tell_me", "clip_move", "tell me which way the {ref} moves."),
    _t("clip_move.where_moving", "clip_move", "where is the {ref} moving?"),
    _t("clip_move.go_in", "clip_move", "which direction does the {ref} go in?"),
    _t("clip_move.moving_in", "clip_move", "which direction is the {ref} moving in?", _H),
    _t("clip_colour.become", "clip_colour", "what colour does the {ref} become?"),
    _t("clip_colour.turn", "clip_colour", "what colour does the {ref} turn?"),
    _t("clip_colour.which_become", "clip_colour", "which colour does the {ref} become?"),
    _t("clip_colour.tell_me", "clip_colour", "tell me the colour the {ref} turns."),
    _t("clip_colour.change_to", "clip_colour", "what colour does the {ref} change to?"),
    _t("clip_colour.changes_to", "clip_colour", "the {ref} changes to which colour?", _H),
    _t("clip_appear.what", "clip_appear", "what appears?"),
    _t("clip_appear.which", "clip_appear", "which object appears?"),
    _t("clip_appear.shows_up", "clip_appear", "what shows up?"),
    _t("clip_appear.which_shape", "clip_appear", "which shape appears?"),
    _t("clip_appear.view", "clip_appear", "what comes into view?", _H),
    _t("clip_disappear.what", "clip_disappear", "what disappears?"),
    _t("clip_disappear.which", "clip_disappear", "which object disappears?"),
    _t("clip_disappear.vanishes", "clip_disappear", "what vanishes?"),
    _t("clip_disappear.which_shape", "clip_disappear", "which shape disappears?"),
    _t("clip_disappear.view", "clip_disappear", "what goes out of view?", _H),
    _t("clip_event.happens", "clip_event", "what happens to the {ref}?"),
    _t("clip_event.does", "clip_event", "what does the {ref} do?"),
    _t("clip_event.tell_me", "clip_event", "tell me what the {ref} does."),
    _t("clip_event.doing", "clip_event", "what is the {ref} doing?"),
    _t("clip_event.describe", "clip_event", "describe what the {ref} does.", _H),
    # --- question/answer output formats ------------------------------------------------------------------
    _t("qa.question_answer", "qa_format", "Question: {question} Answer: {answer}"),
    _t("qa.q_a", "qa_format", "Q: {question} A: {answer}"),
    _t("qa.plain", "qa_format", "{question} {answer}"),
    _t("qa.query_response", "qa_format", "Query: {question} Response: {answer}", _H),
)

QUESTION_KINDS: tuple[str, ...] = (
    "colour",
    "shape",
    "count",
    "position",
    "exists",
    "relation_yesno",
    "relation_what",
    "background",
)
CAPTION_KINDS: tuple[str, ...] = ("caption_short", "caption_long")
CLIP_QUESTION_KINDS: tuple[str, ...] = ("clip_move", "clip_colour", "clip_appear", "clip_disappear", "clip_event")
CLIP_CAPTION_KINDS: tuple[str, ...] = (
    "clip_caption",
    "clip_caption_move",
    "clip_caption_colour",
    "clip_caption_appear",
    "clip_caption_disappear",
)
FORMAT_KINDS: tuple[str, ...] = ("qa_format",)

_BY_ID = {t.id: t for t in TEMPLATES}
if len(_BY_ID) != len(TEMPLATES):  # pragma: no cover - guards edits to the table above
    raise RuntimeError("duplicate template id")


def templates(kind: str | None = None, split: str = "all") -> list[Template]:
    """Templates of ``kind`` (all kinds if None) usable in ``split``.

    ``split="train"`` gives only templates with ``held_out=False``, ``"heldout"`` only those with
    ``held_out=True``, ``"all"`` both.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    out = [t for t in TEMPLATES if kind is None or t.kind == kind]
    if kind is not None and not out:
        raise ValueError(f"unknown template kind {kind!r}")
    if split == "train":
        return [t for t in out if not t.held_out]
    if split == "heldout":
        return [t for t in out if t.held_out]
    return out


def template(template_id: str) -> Template:
    """The template with this id."""
    return _BY_ID[template_id]
