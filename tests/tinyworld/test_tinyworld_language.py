"""Captions and questions: determinism, answers recomputed from the scene, no ambiguity, held-out wordings."""

from __future__ import annotations

import re

import numpy as np
import pytest

from flamingo_vlm.tinyworld import (
    CAPTION_KINDS,
    CLIP_CAPTION_KINDS,
    CLIP_QUESTION_KINDS,
    FORMAT_KINDS,
    NUMBER_WORDS,
    QUESTION_KINDS,
    TEMPLATES,
    BackgroundKind,
    Colour,
    Relation,
    Shape,
    caption,
    format_qa,
    question,
    sample_scene,
    templates,
    vocabulary,
)

ALL_KINDS = (*CAPTION_KINDS, *QUESTION_KINDS, *CLIP_CAPTION_KINDS, *CLIP_QUESTION_KINDS, *FORMAT_KINDS)


# --- independent recomputation (deliberately not using the library's own helpers) ------------------------


def _fits(obj, spec) -> bool:
    return all(getattr(spec, a) is None or getattr(obj, a) == getattr(spec, a) for a in ("shape", "colour", "size"))


def _matching(scene, spec) -> list[int]:
    return [i for i, o in enumerate(scene.objects) if _fits(o, spec)]


def _third(v: float) -> int:
    return 0 if v < 1 / 3 else (1 if v < 2 / 3 else 2)


def _grid_word(obj) -> str:
    row, col = ("top", "", "bottom")[_third(obj.y)], ("left", "", "right")[_third(obj.x)]
    return " ".join(w for w in (row, col) if w) or "centre"


def _offset(a, b, rel: Relation) -> float:
    return {
        Relation.LEFT_OF: b.x - a.x,
        Relation.RIGHT_OF: a.x - b.x,
        Relation.ABOVE: b.y - a.y,
        Relation.BELOW: a.y - b.y,
    }[rel]


CLEAR = 0.1  # a relation stated as true must have at least this much separation (library uses 0.12)


def _check_qa(scene, qa) -> None:
    """Recompute ``qa``'s answer from the scene and check the question is unambiguous."""
    objs = scene.objects
    words = set(re.findall(r"[a-z]+", qa.question))
    if qa.subject is not None:
        for attr in ("shape", "colour", "size"):
            val = getattr(qa.subject, attr)
            if val is not None:
                assert val.value in words or (attr == "shape" and val.plural in words), (qa, attr)
    if qa.kind in ("colour", "shape", "position"):
        m = _matching(scene, qa.subject)
        assert len(m) == 1, qa  # "the star" must name exactly one object
        obj = objs[m[0]]
        if qa.kind == "colour":
            assert qa.subject.colour is None and qa.answer == obj.colour.value
        elif qa.kind == "shape":
            assert qa.subject.shape is None and qa.answer == obj.shape.value
        else:
            for v in (obj.x, obj.y):
                assert min(abs(v - 1 / 3), abs(v - 2 / 3)) >= 0.03, qa  # not borderline
            assert qa.answer == _grid_word(obj)
    elif qa.kind == "count":
        assert qa.answer == str(len(_matching(scene, qa.subject)))
    elif qa.kind == "exists":
        assert qa.answer == ("yes" if _matching(scene, qa.subject) else "no")
    elif qa.kind == "relation_yesno":
        ma, mb = _matching(scene, qa.subject), _matching(scene, qa.other)
        assert len(ma) == 1 and len(mb) == 1 and ma != mb, qa
        off = _offset(objs[ma[0]], objs[mb[0]], qa.relation)
        assert (off >= CLEAR) if qa.answer == "yes" else (qa.answer == "no" and off <= 0), (qa, off)
        assert qa.relation.value.split()[0] in words
    elif qa.kind == "relation_what":
        mb = _matching(scene, qa.other)
        assert len(mb) == 1, qa
        offs = {i: _offset(o, objs[mb[0]], qa.relation) for i, o in enumerate(objs) if i != mb[0]}
        hits = [i for i, off in offs.items() if off >= CLEAR]
        assert len(hits) == 1, qa
        assert all(off <= 0 for i, off in offs.items() if i != hits[0]), qa
        hit = objs[hits[0]]
        assert qa.answer == f"{hit.colour.value} {hit.shape.value}"
    elif qa.kind == "background":
        assert scene.background.kind in (BackgroundKind.PLAIN, BackgroundKind.NOISE)
        assert qa.answer == scene.background.colours[0].value
    else:  # pragma: no cover
        raise AssertionError(f"unexpected kind {qa.kind}")


def _sample(seed: int, n: int, split: str = "train"):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        scene = sample_scene(rng)
        for kind in QUESTION_KINDS:
            qa = question(scene, rng, kind=kind, split=split)
            if qa is not None:
                out.append((scene, qa))
    return out


# --- tests ------------------------------------------------------------------------------------------------


def test_same_seed_same_texts_different_seed_differs():
    def texts(seed):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(40):
            s = sample_scene(rng)
            out.append(caption(s, rng).text)
            out.append(question(s, rng))
        return out

    assert texts(3) == texts(3)
    assert texts(3) != texts(4)


@pytest.mark.parametrize("split", ["train", "heldout", "all"])
def test_every_answer_recomputes_from_the_scene(split):
    samples = _sample(10, 600, split)
    kinds = {qa.kind for _, qa in samples}
    assert kinds == set(QUESTION_KINDS)
    for scene, qa in samples:
        _check_qa(scene, qa)


def test_each_kind_uses_several_wordings():
    samples = _sample(11, 400, "train")
    for kind in QUESTION_KINDS:
        ids = {qa.template_id for _, qa in samples if qa.kind == kind}
        assert len(ids) >= 2, kind


def test_yes_no_answers_are_balanced():
    samples = _sample(12, 800)
    for kind in ("exists", "relation_yesno"):
        answers = [qa.answer for _, qa in samples if qa.kind == kind]
        assert len(answers) > 300
        assert set(answers) == {"yes", "no"}
        assert 0.4 < answers.count("yes") / len(answers) < 0.6, kind


def test_count_answers_are_digits_and_include_zero_and_many():
    answers = [qa.answer for _, qa in _sample(13, 600) if qa.kind == "count"]
    assert all(a.isdigit() for a in answers)
    assert {"0", "1", "2"} <= set(answers)


def test_count_answers_are_not_mostly_one():
    # Most kinds occur once in a scene: were "1" the usual answer, a model could score by guessing it unseen.
    rng = np.random.default_rng(15)
    answers = [qa.answer for qa in (question(sample_scene(rng), rng, kind="count") for _ in range(1500)) if qa]
    assert answers.count("1") / len(answers) < 0.6
    assert sum(a in ("2", "3", "4") for a in answers) / len(answers) > 0.3


def test_question_returns_none_when_nothing_unambiguous_can_be_asked():
    rng = np.random.default_rng(0)
    scene = sample_scene(rng, min_objects=1, max_objects=1)
    assert question(scene, rng, kind="relation_yesno") is None
    assert question(scene, rng, kind="relation_what") is None


def test_answer_is_never_given_away_by_the_question():
    for _, qa in _sample(14, 300):
        if qa.kind in ("colour", "shape", "position", "count", "relation_what", "background"):
            # The answer word(s) may appear in the question only as part of the subject, never for colour/shape.
            if qa.kind == "colour":
                assert qa.answer not in qa.question.split()
            if qa.kind == "shape":
                assert qa.answer not in re.findall(r"[a-z]+", qa.question)


_COLOURS_RE = "|".join(c.value for c in Colour)
_SHAPES_RE = "|".join(s.value for s in Shape)
_POSITION_RE = re.compile(
    rf"(?:(small|medium|large) )?({_COLOURS_RE}) ({_SHAPES_RE}) "
    r"(in the top left|at the top|in the top right|on the left|in the centre"
    r"|on the right|in the bottom left|at the bottom|in the bottom right)"
)
_PHRASE_TO_WORD = {
    "in the top left": "top left",
    "at the top": "top",
    "in the top right": "top right",
    "on the left": "left",
    "in the centre": "centre",
    "on the right": "right",
    "in the bottom left": "bottom left",
    "at the bottom": "bottom",
    "in the bottom right": "bottom right",
}


_RELATION_RE = re.compile(r"the ([a-z ]+?) is ((?:to the )?(?:left of|right of)|above|below) the ([a-z ]+?)\.")


def _find(scene, phrase: str) -> list:
    """Objects a phrase like "small red star", "red object" or "star" describes."""
    *mods, head = phrase.split()
    return [
        o
        for o in scene.objects
        if (head in ("object", "shape") or head == o.shape.value)
        and all(m in (o.colour.value, o.size.value) for m in mods)
    ]


def test_captions_are_true_to_the_scene():
    rng = np.random.default_rng(20)
    seen_number_words = set()
    checked_positions = checked_relations = 0
    for _ in range(500):
        scene = sample_scene(rng)
        for kind in CAPTION_KINDS:
            cap = caption(scene, rng, kind=kind)
            text = cap.text.lower()
            words = set(re.findall(r"[a-z]+", text))
            for o in scene.objects:  # every object is named
                assert o.colour.value in words and (o.shape.value in words or o.shape.plural in words), cap
            if kind == "caption_short":
                assert cap.text == cap.text.lower() and not cap.text.endswith(".")
            else:
                assert cap.text[0].isupper() and cap.text.endswith(".")
            # Any stated position is the object's grid position.
            for _size, colour, shape, phrase in _POSITION_RE.findall(text):
                cands = [o for o in scene.objects if o.colour.value == colour and o.shape.value == shape]
                assert any(_grid_word(o) == _PHRASE_TO_WORD[phrase] for o in cands), (cap, colour, shape, phrase)
                checked_positions += 1
            # Stated counts are right.
            m = re.match(r"there (?:is|are) (\w+) (?:object|shape)", text)
            if m:
                assert m.group(1) == NUMBER_WORDS[len(scene.objects)]
                seen_number_words.add(m.group(1))
            # Stated relations are right.
            for a, rel, b in _RELATION_RE.findall(text):
                oa, ob = _find(scene, a), _find(scene, b)
                assert len(oa) == 1 and len(ob) == 1, (cap, a, b)
                assert _offset(oa[0], ob[0], Relation(rel.replace("to the ", ""))) >= CLEAR
                checked_relations += 1
    assert len(seen_number_words) >= 3
    assert checked_positions > 100 and checked_relations > 20


def test_caption_kinds_and_wordings_vary():
    rng = np.random.default_rng(21)
    ids = set()
    for _ in range(300):
        scene = sample_scene(rng)
        ids.update(caption(scene, rng).template_ids)
    assert len(ids) >= 8


def test_registry_has_train_and_heldout_wordings_for_every_kind():
    kinds = {t.kind for t in TEMPLATES}
    assert kinds == set(ALL_KINDS)
    for kind in kinds:
        train, held = templates(kind, "train"), templates(kind, "heldout")
        assert len(train) >= 2 and len(held) >= 1, kind
        assert not any(t.held_out for t in train)
        assert all(t.held_out for t in held)
        assert {t.id for t in train} | {t.id for t in held} == {t.id for t in templates(kind, "all")}
    with pytest.raises(ValueError):
        templates("colour", "validation")


def test_questions_have_many_training_wordings_with_the_key_word_in_different_places():
    # With three wordings per kind the bundled model answered held-out wordings by their first words ("the teal
    # object has what shape?" -> "yes"); see templates.py. Each kind keeps at least 5 (scene) / 4 (clip) training
    # wordings, and they do not all start with the same two words.
    for kinds, least in ((QUESTION_KINDS, 5), (CLIP_QUESTION_KINDS, 4)):
        for kind in kinds:
            train = templates(kind, "train")
            assert len(train) >= least, kind
            openings = {" ".join(t.text.split()[:2]) for t in train}
            assert len(openings) >= 3, (kind, openings)


def test_heldout_question_wordings_are_new_sentences_of_known_words():
    # A held-out question keeps a piece that no training wording has, but every word of it is in some training
    # wording, as every word of a new VQAv2 question is known to an LM pretrained on the web. When "number",
    # "region" and "contain" were in no training question, the bundled model answered "what is the number of
    # circles?" right 3% of the time (55% in training wordings), and its bare LM did no better on text.
    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z]+", re.sub(r"\{[^}]*\}", " ", text.lower())))

    known = set().union(*(words(t.text) for t in TEMPLATES if not t.held_out))
    for kind in (*QUESTION_KINDS, "clip_move", "clip_colour"):
        for held in templates(kind, "heldout"):
            assert words(held.text) <= known, (held.id, words(held.text) - known)
            assert held.text not in {t.text for t in templates(kind, "train")}


def test_heldout_templates_never_used_in_train_split():
    held = {t.id for t in TEMPLATES if t.held_out}
    rng = np.random.default_rng(22)
    used_train, used_held = set(), set()
    for _ in range(400):
        scene = sample_scene(rng)
        for split, used in (("train", used_train), ("heldout", used_held)):
            cap = caption(scene, rng, split=split)
            used.update(cap.template_ids)
            assert cap.held_out == (split == "heldout")
            qa = question(scene, rng, split=split)
            if qa is not None:
                used.add(qa.template_id)
                assert qa.held_out == (split == "heldout")
                used.add(format_qa(qa, rng, split=split)[1])
    assert used_train and not (used_train & held)
    assert used_held and used_held <= held


def test_generated_text_stays_within_vocabulary():
    vocab = vocabulary()
    rng = np.random.default_rng(23)
    for _ in range(300):
        scene = sample_scene(rng)
        texts = [caption(scene, rng, split="all").text]
        qa = question(scene, rng, split="all")
        if qa is not None:
            texts += [qa.question, qa.answer, format_qa(qa, rng, split="all")[0]]
        for t in texts:
            assert set(re.findall(r"[a-z]+", t.lower())) <= vocab, t
