"""Text corpus for pretraining the tiny world's frozen language model, and text for training its tokenizer.

Flamingo keeps its LM frozen, so the ability to copy from the context (induction heads, Olsson et al.) must
already be in the LM: the corpus is therefore full of in-context structure. Every document is a run of
*chunks* joined by ``<|endofchunk|>`` (the token that ends each example in a Flamingo prompt), in ONE format
per document, and usually about things defined inside that document:

* ``scene_qa`` (18%): a scene described in words ("scene: a red circle and a blue star on a gray background.")
  then one question answerable from that description, in one Q/A format per document (a training format, or
  two labels drawn for the document: "ask: ... so: ...", "Blick: ... Tove: ...");
* ``captions`` (9%): several scene captions in one template, each behind the document's label ("caption: ",
  a made-up word, or none), as the text side of an image album is;
* ``mapping`` (12%): "a small red star -> zib" items where an attribute (shape or colour) is mapped to labels
  chosen for this document only (made-up words or digits): the same label means different things in
  different documents, so it can only be predicted from earlier items (Chan et al.);
* ``novel_words`` (16%): made-up words defined and then reused ("a dax is a red circle. ... the red circle is a
  dax."), or bound only by examples ("a red circle. this is a dax."), each word used at least twice;
* ``copying`` (8%): a list of key/value pairs, then the keys asked again in a new order (recall by key);
* ``repeats`` (23% of documents, about 8% of the text): a short run of words said again 2-4 times (pure
  copying, what forms induction heads);
* ``clip_qa`` (7%): a clip described in words then a question about it;
* ``glossary`` (3%): synonyms ("to travel means to move.") so that the words of held-out wordings are known
  to the LM, as an LM pretrained on the web knows them, without their held-out phrasings ever appearing;
* ``facts`` (4%): what each shape and colour is like ("a shape that has three corners is a triangle.", "snow is
  white."), so a shape word is not only ever copied but also predicted from a description, as a web-trained LM
  can; the cross-attention can only name a shape through such a path.

No document contains the evaluation formats ("Question: ... Answer:", "Output:"), a held-out template
wording, or a made-up word reserved for the novel-word evaluation (see :mod:`.datasets`).

File format (:func:`write_lm_corpus`): UTF-8 text, ONE DOCUMENT PER LINE (documents never contain a newline),
chunks inside a line separated by the literal string ``<|endofchunk|>`` (a special token of the tiny-world
tokenizer, so it is never split).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ._random import choice, shuffled
from .datasets import (
    EVAL_CAPTION_FORMAT,
    EVAL_QA_FORMAT,
    TRAIN_QA_FORMATS,
    caption_prefix,
    document_qa_format,
    fill_qa,
    reserved_eval_words,
    sample_rng,
    training_words,
)
from .language import NUMBER_WORDS, _scene_slots, caption, clip_caption, clip_question, question, vocabulary
from .scene import Colour, Shape, Size, sample_scene
from .templates import CAPTION_KINDS, CLIP_QUESTION_KINDS, TEMPLATES, templates
from .video import EventKind, sample_clip

__all__ = [
    "CHUNK_SEPARATOR",
    "LM_DOC_TYPES",
    "iter_tokenizer_text",
    "lm_document",
    "read_lm_corpus",
    "write_lm_corpus",
]

CHUNK_SEPARATOR = "<|endofchunk|>"
_STREAM_CORPUS, _STREAM_TOKENIZER = 11, 12


def _join(chunks: list[str]) -> str:
    return CHUNK_SEPARATOR.join(chunks)


# --- document types -------------------------------------------------------------------------------------

_SCENE_INTROS = ("scene: {desc}", "picture: {desc}", "{desc}", "in the picture: {desc}", "description: {desc}")


def _a(phrase: str) -> str:
    """With its indefinite article: "a red star", "an orange star"."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _end(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _scene_qa(rng: np.random.Generator) -> str:
    """Described scenes, each followed by Q/A answerable from the description alone."""
    intro, fmt = choice(rng, _SCENE_INTROS), document_qa_format(rng)
    fixed_kind = choice(rng, ["colour", "shape", "count", "exists"]) if rng.random() < 0.4 else None
    chunks = []
    for _ in range(int(rng.integers(3, 7))):
        # One size for all objects: captions mention sizes only now and then, so a question that told two
        # same-coloured objects apart by size could not be answered from the description.
        scene = sample_scene(rng, sizes=[choice(rng, list(Size))])
        cap = caption(scene, rng, split="train")
        fields = next(t for t in TEMPLATES if t.id == cap.template_ids[0]).fields
        # Every caption lists every object, so these kinds are always answerable from it; background and
        # position only when the caption says them.
        kinds = ["colour", "shape", "count", "exists"]
        if "background" in fields or "background_desc" in fields:
            kinds.append("background")
        if "objects_positioned" in fields:
            kinds.append("position")
        # One Q/A per chunk: the answer is then always followed by <|endofchunk|>, as in a Flamingo prompt's
        # examples. (Two Q/As per chunk taught the LM to run on after an answer: "green question: what is".)
        qa = question(scene, rng, kind=fixed_kind or choice(rng, kinds), split="train")
        if qa is not None:
            chunks.append(" ".join([_end(intro.format(desc=cap.text)), fill_qa(fmt, qa.question, qa.answer)]))
    return _join(chunks)


def _captions(rng: np.random.Generator) -> str:
    kind = choice(rng, CAPTION_KINDS)
    tpl = choice(rng, templates(kind, "train"))
    prefix = caption_prefix(rng)
    n = int(rng.integers(3, 7))
    chunks: list[str] = []
    while len(chunks) < n:
        scene = sample_scene(rng)
        slots = _scene_slots(scene, rng)
        if tpl.fields <= set(slots):
            text = tpl.fill(**slots)
            chunks.append(prefix + (text[:1].upper() + text[1:] if kind == "caption_long" else text))
    return _join(chunks)


_MAPPING_FORMATS = ("{x} -> {y}", "{x}: {y}", "input: {x} label: {y}", "{x} = {y}", "{x} is called {y}")


def _mapping(rng: np.random.Generator) -> str:
    """Object phrases labelled by a per-document mapping of one attribute (labels repeat, meanings do not)."""
    attr = choice(rng, ["shape", "colour"])
    values = shuffled(rng, list(Shape) if attr == "shape" else list(Colour))[: int(rng.integers(2, 5))]
    labels = training_words(rng, len(values)) if rng.random() < 0.6 else [str(d) for d in shuffled(rng, range(10))]
    label_of = dict(zip(values, labels, strict=False))
    fmt = choice(rng, _MAPPING_FORMATS)
    # Each value at least twice, shuffled: the second time the label is predictable from the first.
    order = shuffled(rng, [v for v in values for _ in range(2)] + [choice(rng, values) for _ in range(2)])
    chunks = []
    for v in order:
        shape = v if attr == "shape" else choice(rng, list(Shape))
        colour = v if attr == "colour" else choice(rng, list(Colour))
        size = choice(rng, list(Size))
        x = " ".join([str(size)] * (rng.random() < 0.3) + [str(colour), str(shape)])
        chunks.append(fmt.format(x=_a(x) if rng.random() < 0.5 else x, y=label_of[v]))
    return _join(chunks)


_DEFINITIONS = ("a {w} is {a_x}.", "we call {a_x} a {w}.", "{a_x} is called a {w}.", "the word {w} means {x}.")
_REUSES = (
    "{a_x}. this is a {w}.",
    "the {x} is a {w}.",
    "here is {a_x}. it is a {w}.",
    "{a_x}: a {w}.",
    "look, {a_x}. that is a {w}.",
)


def _novel_words(rng: np.random.Generator) -> str:
    """Made-up words bound to categories inside the document, then reused (each word at least twice)."""
    k = int(rng.integers(2, 5))
    words = training_words(rng, k)
    by_shape = rng.random() < 0.5
    shapes = shuffled(rng, list(Shape))[:k]
    cats = [(None, s) if by_shape else (choice(rng, list(Colour)), s) for s in shapes]

    def phrase(cat: tuple[Colour | None, Shape]) -> str:
        colour = cat[0] if cat[0] is not None else choice(rng, list(Colour))
        return f"{colour} {cat[1]}" if (cat[0] is not None or rng.random() < 0.5) else str(cat[1])

    chunks = []
    if rng.random() < 0.5:  # definitions first; otherwise the words are bound only by the examples
        definition = choice(rng, _DEFINITIONS)
        for w, cat in zip(words, cats, strict=True):
            x = phrase(cat) if cat[0] is not None else str(cat[1])
            chunks.append(definition.format(w=w, x=x, a_x=_a(x)))
    reuse = choice(rng, _REUSES)
    for c in shuffled(rng, [c for c in range(k) for _ in range(2)] + [int(rng.integers(k))]):
        x = phrase(cats[c])
        chunks.append(reuse.format(w=words[c], x=x, a_x=_a(x)))
    if rng.random() < 0.4:
        fmt = choice(rng, TRAIN_QA_FORMATS)
        c = int(rng.integers(k))
        x = phrase(cats[c])
        chunks.append(fill_qa(fmt, f"what do we call {_a(x)}?", words[c]))
    return _join(chunks)


_COPY_FORMATS = ("{k}: {v}", "{k} = {v}", "{k} -> {v}", "key {k} value {v}")


def _copying(rng: np.random.Generator) -> str:
    """Key/value pairs listed once, then recalled in a new order (induction: [A][B] ... [A] -> [B])."""
    n = int(rng.integers(3, 7))
    keys = training_words(rng, n)
    pool = choice(rng, [[str(c) for c in Colour], [str(s) for s in Shape], [str(d) for d in range(10)],
                        list(NUMBER_WORDS)])
    values = [choice(rng, pool) for _ in range(n)]
    fmt = choice(rng, _COPY_FORMATS)
    listing = ", ".join(fmt.format(k=k, v=v) for k, v in zip(keys, values, strict=True)) + "."
    recall = [fmt.format(k=keys[i], v=values[i]) for i in rng.permutation(n)]
    return _join([listing, *recall])


def _repeats(rng: np.random.Generator) -> str:
    """A run of 3-8 words (made-up, colour and shape words) said again 2-4 times, one run per chunk.

    The plainest copying signal: past the first run every token is predictable only by looking back
    ([A][B] ... [A] -> [B]), which is what forms induction heads (Olsson et al.). Without these runs the
    1,000-step LM had none: the later pieces of a made-up word already seen in the document cost it 4.3 nats.
    """
    n = int(rng.integers(3, 9))
    pool = training_words(rng, n) + [str(c) for c in Colour] + [str(s) for s in Shape]
    run = " ".join(choice(rng, pool) for _ in range(n))
    return _join([run] * int(rng.integers(2, 5)))


_CLIP_EVENTS: dict[str, list[EventKind]] = {
    "clip_move": [EventKind.MOVE],
    "clip_colour": [EventKind.COLOUR_CHANGE],
    "clip_appear": [EventKind.APPEAR],
    "clip_disappear": [EventKind.DISAPPEAR],
}
_CLIP_INTROS = ("clip: {desc}", "video: {desc}", "in the clip, {desc}", "{desc}")


def _clip_qa(rng: np.random.Generator) -> str:
    intro, fmt = choice(rng, _CLIP_INTROS), choice(rng, TRAIN_QA_FORMATS)
    kind = choice(rng, list(CLIP_QUESTION_KINDS)) if rng.random() < 0.5 else None
    # A question kind repeated over the document needs clips with that kind of event.
    events = _CLIP_EVENTS.get(kind) if kind is not None else None
    chunks = []
    for _ in range(int(rng.integers(3, 6))):
        clip = sample_clip(rng, n_events=2 if rng.random() < 0.25 else 1, event_kinds=events)
        qa = clip_question(clip, rng, kind=kind, split="train")
        if qa is None:
            continue
        desc = _end(intro.format(desc=clip_caption(clip, rng, split="train").text))
        chunks.append(f"{desc} {fill_qa(fmt, qa.question, qa.answer)}")
    return _join(chunks) if chunks else _scene_qa(rng)


# Words that occur only in held-out wordings or evaluation formats, glossed with training words, so that the LM
# knows them as an LM pretrained on the web would. The held-out *phrasings* never appear (the tests check
# datasets.heldout_fragments()), nor do the evaluation formats (no "Answer:" with a colon).
_GLOSSARY = (
    "travel means move.",
    "slide means move.",
    "become means turn.",
    "vanish means disappear.",
    "region means part.",
    "contain means have.",
    "describe means tell.",
    "query means question.",
    "response means reply.",
    "answer means reply.",
    "question means something you ask.",
    "output means result.",
    "video means clip.",
    "number means count.",
    "name means the word for a thing.",
    "view means what you can see.",
    "moving means going.",
    "picture means image.",
    "shape means object.",
)


def _glossary(rng: np.random.Generator) -> str:
    """2-3 chunks of 2-4 glosses; a gloss is capitalised half the time, so "Answer", " Answer" (mid-chunk)
    and "answer" all occur as they do in prompts."""
    chunks = []
    for _ in range(int(rng.integers(2, 4))):
        picked = shuffled(rng, list(_GLOSSARY))[: int(rng.integers(2, 5))]
        chunks.append(" ".join(g[:1].upper() + g[1:] if rng.random() < 0.5 else g for g in picked))
    return _join(chunks)


# What each shape and colour is like, as an LM pretrained on the web knows it. Everywhere else in the corpus a
# shape word is only ever copied from the context, so the LM has no path from a *description* to the word, and
# the cross-attention can only write into its hidden state. Without these, a Flamingo stage left shape in that
# hidden state (a linear probe found it 49% of the time) yet named it no better with the right image than with
# another (25% / 24%); with them, 46% / 22% after a 600-step pairs phase and 78% / 9% after 1,200 (the bundled
# model: see its card).
_SHAPE_FACTS: dict[str, tuple[str, ...]] = {
    "circle": ("is round", "has no corners", "is the same width in every direction", "looks like a ring filled in"),
    "square": ("has four equal sides", "has four square corners", "is as wide as it is tall",
               "is a box with equal sides"),
    "rectangle": ("has two long sides and two short sides", "is wider than it is tall", "is a stretched square",
                  "looks like a brick"),
    "triangle": ("has three corners", "has three sides", "points up at the top", "looks like a roof"),
    "star": ("has five points", "has points all around", "looks like a star in the night sky",
             "has five arms"),
    "diamond": ("is a square standing on one corner", "has four corners, one at the top", "points up and down",
                "is shaped like a kite"),
    "cross": ("is two bars that meet in the middle", "looks like a plus sign", "has four arms of the same length",
              "is made of one bar across another"),
    "heart": ("has two round bumps on top and a point below", "is the shape of love", "is round at the top",
              "comes to a point at the bottom"),
}
_COLOUR_FACTS: dict[str, tuple[str, ...]] = {
    "red": ("blood", "a ripe tomato", "a fire truck"), "orange": ("an orange", "a carrot", "a pumpkin"),
    "yellow": ("the sun", "a lemon", "a banana"), "green": ("grass", "a leaf", "a frog"),
    "teal": ("a peacock's feathers", "a tropical lagoon", "a duck's wing"), "blue": ("the sky", "the sea", "a sapphire"),
    "purple": ("a plum", "a grape", "a violet"), "pink": ("a flamingo", "a rose petal", "bubble gum"),
    "brown": ("chocolate", "a tree trunk", "mud"), "black": ("coal", "the night", "a crow"),
    "gray": ("ash", "a rain cloud", "an elephant"), "white": ("snow", "milk", "a cloud"),
}
_FACT_FORMS = (  # (named first, described first)
    ("a {word} {fact}.", "a shape that {fact} is a {word}."),
    ("the {word} {fact}.", "which shape {fact}? a {word}."),
    ("a {word}: it {fact}.", "it {fact}, so it is a {word}."),
)
_COLOUR_FORMS = ("{thing} is {word}.", "the colour of {thing} is {word}.", "{word} like {thing}.")


def _facts(rng: np.random.Generator) -> str:
    """3-6 chunks of facts about shapes and colours, half of them naming the thing *after* describing it ("a shape
    that has three corners is a triangle.", "snow is white."), so the word is predicted from what it is like."""
    chunks = []
    for _ in range(int(rng.integers(3, 7))):
        if rng.random() < 0.7:
            word = choice(rng, list(_SHAPE_FACTS))
            fact = choice(rng, list(_SHAPE_FACTS[word]))
            named_first, described_first = choice(rng, list(_FACT_FORMS))
            form = described_first if rng.random() < 0.5 else named_first
            chunks.append(form.format(word=word, fact=fact))
        else:
            word = choice(rng, list(_COLOUR_FACTS))
            thing = choice(rng, list(_COLOUR_FACTS[word]))
            chunks.append(choice(rng, list(_COLOUR_FORMS)).format(thing=thing, word=word))
    return _join(chunks)


# Proportions of the document types (see the module docstring).
LM_DOC_TYPES: dict[str, tuple[float, Callable[[np.random.Generator], str]]] = {
    # scene_qa 0.30, captions 0.03, repeats 0.17 (runs/tw51, on a CPU without AMX where these weights' LM missed
    # recall by key): recall 97% (17%), CIDEr +16-30, VQA level, scene QA no better. The whole recipe with them
    # there (runs/tw58, their own tokenizer): recall 95%, but VQA 44-45% on 384 questions (49/48/47% with these
    # weights) and CIDEr 230-243 (217-251): not adopted.
    # With half of scene_qa asking only "is there a ...?" (runs/tw52): exists still at the fixed-answer rate (43%).
    "scene_qa": (0.18, _scene_qa),
    "captions": (0.09, _captions),
    "mapping": (0.12, _mapping),
    "novel_words": (0.16, _novel_words),
    "copying": (0.08, _copying),
    "repeats": (0.23, _repeats),  # short: about 8% of the text
    "clip_qa": (0.07, _clip_qa),
    "glossary": (0.03, _glossary),
    "facts": (0.04, _facts),
}


def lm_document(rng: np.random.Generator, doc_type: str | None = None) -> str:
    """One corpus document (one line, no newline) of ``doc_type`` (drawn by :data:`LM_DOC_TYPES` if None)."""
    names = list(LM_DOC_TYPES)
    if doc_type is None:
        doc_type = choice(rng, names, p=[LM_DOC_TYPES[n][0] for n in names])
    if doc_type not in LM_DOC_TYPES:
        raise ValueError(f"unknown LM document type {doc_type!r}; expected one of {names}")
    return LM_DOC_TYPES[doc_type][1](rng)


def write_lm_corpus(path: str | os.PathLike, *, seed: int, num_documents: int, progress: bool = True) -> Path:
    """Write ``num_documents`` documents to ``path`` (UTF-8, one document per line); return the path.

    Document ``i`` depends only on ``(seed, i)``. Read it back with :func:`read_lm_corpus`.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        indices = tqdm(range(num_documents), desc="tiny-world LM corpus", unit="doc", disable=not progress)
        f.writelines(lm_document(sample_rng(seed, _STREAM_CORPUS, i)) + "\n" for i in indices)
    os.replace(tmp, out)
    return out


def read_lm_corpus(path: str | os.PathLike) -> Iterator[str]:
    """The documents of a corpus written by :func:`write_lm_corpus`."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield line.rstrip("\n")


def iter_tokenizer_text(*, seed: int = 0, num_documents: int = 5000) -> Iterator[str]:
    """Text for training the tiny-world BPE tokenizer.

    Covers every word the world and the evaluation sets can write: every template of every split (held-out
    wordings included) filled with real scenes and clips, both evaluation formats, all answers, digits, and
    many made-up words, plus ``num_documents`` corpus documents so that merge statistics follow the corpus.
    The made-up words reserved for the novel-word evaluation are left out on purpose: their tokens would then
    be pieces the LM has seen, not whole-word tokens whose embeddings were never trained. Special tokens
    (``<|endofchunk|>``) are removed: the tokenizer registers them itself.
    """
    rng = sample_rng(seed, _STREAM_TOKENIZER, 0)
    reserved = reserved_eval_words()
    # Every template's own words, held-out ones included (slot names are not text: blank them out).
    yield " ".join(re.sub(r"\{[^}]*\}", " ", t.text) for t in TEMPLATES)
    yield " ".join(sorted(vocabulary()))
    yield " ".join(str(d) for d in range(100))
    for i in range(max(200, num_documents // 10)):
        scene = sample_scene(rng)
        split = "heldout" if i % 2 else "train"
        cap = caption(scene, rng, split=split)
        qa = question(scene, rng, split=split)
        lines = [EVAL_CAPTION_FORMAT.format(caption=cap.text)]
        if qa is not None:
            lines.append(EVAL_QA_FORMAT.format(question=qa.question, answer=qa.answer))
        clip = sample_clip(rng)
        cqa = clip_question(clip, rng, split=split)
        lines.append(clip_caption(clip, rng, split=split).text)
        if cqa is not None:
            lines.append(EVAL_QA_FORMAT.format(question=cqa.question, answer=cqa.answer))
        yield " ".join(lines)
    words = [w for w in training_words(rng, 2000) if w not in reserved]
    for j in range(0, len(words), 50):
        yield " ".join(words[j : j + 50])
    for i in range(num_documents):
        yield lm_document(sample_rng(seed, _STREAM_CORPUS, i)).replace(CHUNK_SEPARATOR, " ")

