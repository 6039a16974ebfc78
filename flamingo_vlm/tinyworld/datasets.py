"""Tiny-world TRAINING sets as WebDataset shards: image-text pairs, video-text pairs, interleaved documents.

Everything here uses *training* wordings only (``templates(..., split="train")``) and training Q/A output
formats (:data:`TRAIN_QA_FORMATS`, or labels drawn per document: :func:`document_qa_format`,
:func:`caption_prefix`); the evaluation formats (:data:`EVAL_QA_FORMAT`, :data:`EVAL_CAPTION_FORMAT`)
and held-out wordings are reserved for :mod:`.evalsets`, so few-shot evaluation measures adaptation to a
format shown only in the prompt.

Shard layouts are those of :mod:`flamingo_vlm.data.formats` (PNG images):

* pairs: ``{key}.png`` + ``{key}.txt``;
* video: ``{key}.frame000.png`` ... ``{key}.frame007.png`` + ``{key}.txt``;
* interleaved (MMC4): ``{key}.json`` with ``text_list`` and ``image_info`` (``image_name`` ``img0.png``, ...,
  ``matched_text_index``: the image comes just before that sentence) + ``{key}.img0.png``, ... The JSON also has
  ``doc_type`` and, for novel-word documents, ``bindings`` / ``image_categories`` (metadata: the training
  pipeline reads only ``text_list`` and ``image_info``).

Interleaved document types (what teaches in-context learning; see ``shared/paper/in-context-learning.md``):

* ``album`` (30%): 3-5 images, each followed by a caption in ONE template per document (repeated format);
  half of the albums are *themed* (every scene holds one colour+shape class drawn Zipf-like from 96), which
  makes them bursty;
* ``quiz`` (35%): 3-5 images, each followed by a question and answer in ONE training Q/A format per
  document, one per image; half of the quizzes ask the same kind of question about every image (bursty);
* ``novel_words`` (25%): 2-4 made-up words, fresh per document, name 2-4 categories (a shape, or a
  colour+shape) only inside this document; every category is shown at least twice, each image followed by
  "this is a dax." in one phrase per document, so the word of a repeated category is predictable only from
  the earlier images (labels change meaning across documents: Chan et al., Frozen);
* ``compare`` (10%): 3-4 images with short captions, each later image followed by a sentence comparing its
  object count with the previous picture's (multi-image reasoning through the text).

Randomness: sample ``i`` of a stream is drawn from its own generator seeded by ``(seed, stream, i)``, so a
sample does not depend on how many draws earlier samples made, and the same seed gives byte-identical shards.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ._random import choice, shuffled
from .language import _scene_slots, caption, clip_caption, clip_question, question
from .render import render_scene
from .scene import Colour, ObjectSpec, Scene, Shape, sample_scene
from .templates import CAPTION_KINDS, QUESTION_KINDS, TEMPLATES, Template, templates
from .video import render_clip, sample_clip
from .words import is_novel, novel_word, novel_words

__all__ = [
    "DOC_TYPES",
    "EVAL_CAPTION_FORMAT",
    "EVAL_QA_FORMAT",
    "EVAL_WORD_POOL_SEED",
    "EVAL_WORD_POOL_SIZE",
    "NOVEL_WORD_PHRASES",
    "TRAIN_QA_FORMATS",
    "Document",
    "build_training_sets",
    "caption_prefix",
    "document_qa_format",
    "fill_qa",
    "has_eval_format",
    "heldout_fragments",
    "interleaved_document",
    "iter_document_records",
    "pair_sample",
    "png_bytes",
    "reserved_eval_words",
    "sample_rng",
    "training_words",
    "uses_heldout_wording",
    "video_sample",
]

# --- reserved formats and words ---------------------------------------------------------------------------

# The paper's evaluation prompts (Sec. 2.5). They must never occur in training data or the LM corpus: the
# model should pick up these formats from the prompt's examples, as Flamingo does.
EVAL_QA_FORMAT = "Question: {question} Answer: {answer}"
EVAL_CAPTION_FORMAT = "Output: {caption}"

# Q/A output formats used for training text. "Q: A:" and "{q} {a}" are the registry's training formats;
# the registry's "Question: ... Answer: ..." is deliberately left out (reserved above) as is its held-out
# "Query: ... Response: ...".
TRAIN_QA_FORMATS: tuple[str, ...] = (
    "Q: {question} A: {answer}",
    "{question} {answer}",
    "question: {question} reply: {answer}",
    "{question} -> {answer}",
    "q: {question} a: {answer}",
    "{question} => {answer}",
)

# How a novel-word document names the object in each image; one phrase per document (repeated format).
NOVEL_WORD_PHRASES: tuple[str, ...] = (
    "this is a {word}.",
    "a {word}!",
    "look, a {word}.",
    "it is a {word}.",
    "that is a {word}.",
    "here is a {word}.",
    "{word}.",
    "a {word}.",
)

# Made-up words reserved for the novel-word EVALUATION task: a fixed pool drawn from its own seed. Training
# documents and the LM corpus never use a pool word (training_words rejects them), so the eval binding of
# these words exists only in the eval prompt's examples and 0-shot accuracy is at chance.
EVAL_WORD_POOL_SEED = 7_340_033
EVAL_WORD_POOL_SIZE = 64

_EVAL_FORMAT = re.compile(r"question:.*answer:|answer:|output:", re.IGNORECASE | re.DOTALL)


def has_eval_format(text: str) -> bool:
    """True if ``text`` contains an evaluation format ("Question: ... Answer:", "Answer:", "Output:", any case)."""
    return _EVAL_FORMAT.search(text) is not None


@cache
def reserved_eval_words() -> frozenset[str]:
    """The pool of made-up words that only the novel-word evaluation set may use."""
    return frozenset(novel_words(EVAL_WORD_POOL_SIZE, seed=EVAL_WORD_POOL_SEED))


def training_words(rng: np.random.Generator, k: int) -> list[str]:
    """``k`` distinct made-up words for training text (never one of :func:`reserved_eval_words`)."""
    reserved = reserved_eval_words()
    out: list[str] = []
    while len(out) < k:
        word = novel_word(rng)
        if word not in reserved and word not in out:
            out.append(word)
    assert all(is_novel(w) for w in out) and not reserved & set(out)  # by construction; guards future edits
    return out


def _literal_pieces(text: str) -> list[str]:
    """The text between a template's slots, trimmed of spaces, commas and full stops."""
    return [p.strip(" ,.") for p in re.split(r"\{[^}]*\}", text) if p.strip(" ,.")]


@cache
def heldout_fragments() -> tuple[str, ...]:
    """Lower-case pieces of held-out template wordings that no training template contains.

    Training text must contain none of them ("is what colour?", "travels", "in this video", "Query:" ...);
    a piece that also occurs in a training template ("the", "on") says nothing about the wording and is
    left out.
    """
    train_text = " | ".join(t.text.lower() for t in TEMPLATES if not t.held_out)
    pieces = {p.lower() for t in TEMPLATES if t.held_out for p in _literal_pieces(t.text)}
    return tuple(sorted(p for p in pieces if len(p) >= 3 and p not in train_text))


def uses_heldout_wording(text: str) -> bool:
    """True if ``text`` contains a piece of a held-out template wording (see :func:`heldout_fragments`)."""
    low = text.lower()
    return any(f in low for f in heldout_fragments())


# --- small helpers --------------------------------------------------------------------------------------

_STREAM_PAIRS, _STREAM_VIDEO, _STREAM_DOCS = 1, 2, 3


def sample_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator for sample ``index`` of ``stream`` (seeds must be non-negative)."""
    return np.random.default_rng([seed, stream, index])


def png_bytes(image: Image.Image) -> bytes:
    """Lossless PNG bytes (deterministic for the same pixels and Pillow version)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def fill_qa(fmt: str, question_text: str, answer: str) -> str:
    """One Q/A sentence in output format ``fmt``."""
    return fmt.format(question=question_text, answer=answer)


# Per-document labels before each item. The evaluation prompts put labels the model never saw in training
# before every answer ("Output: ...", "Question: ... Answer: ..."). A frozen LM continues such a prompt in its
# examples' format only if its training text taught it that the items of a document share whatever label the
# document chose, so training documents draw their own labels, common words or made-up ones (few-shot gains
# come largely from matching the examples' format: ../shared/paper/in-context-learning.md). None of them is
# an evaluation label (has_eval_format) or a held-out wording ("Query:", "Response:").
_CAPTION_LABELS = ("caption", "description", "text", "label", "says", "picture", "scene", "note", "desc", "line",
                   "shows", "seen")
_QUESTION_LABELS = ("Q", "ask", "input", "prompt", "asks", "quiz", "given", "test")
_ANSWER_LABELS = ("A", "reply", "says", "out", "result", "said", "so", "then", "got", "is")


def _label(rng: np.random.Generator, pool: Sequence[str], made_up: str) -> str:
    label = made_up if rng.random() < 0.3 else choice(rng, pool)
    return label.capitalize() if rng.random() < 0.5 else label.lower()


def caption_prefix(rng: np.random.Generator) -> str:
    """One document's label before each caption: "" (none, 40%), else e.g. "caption: " or "Zib: "."""
    if rng.random() < 0.4:
        return ""
    return _label(rng, _CAPTION_LABELS, training_words(rng, 1)[0]) + ": "


def document_qa_format(rng: np.random.Generator) -> str:
    """One document's Q/A format: one of :data:`TRAIN_QA_FORMATS` (half the time), else two labels drawn for
    this document, "{label}: {question} {label}: {answer}" (e.g. "ask: ... so: ...", "Blick: ... Tove: ...")."""
    if rng.random() < 0.5:
        return choice(rng, TRAIN_QA_FORMATS)
    made_up = training_words(rng, 2)
    question_label = _label(rng, _QUESTION_LABELS, made_up[0])
    answer_label = _label(rng, _ANSWER_LABELS, made_up[1])
    return f"{question_label}: {{question}} {answer_label}: {{answer}}"


# Colour+shape classes in a fixed random order with Zipf-like weights (1/rank): a few classes are common,
# most are rare, which is the mix under which in-context and in-weights learning coexist (Chan et al.).
_CLASSES: tuple[tuple[Colour, Shape], ...] = tuple(
    shuffled(np.random.default_rng(20_220_531), [(c, s) for c in Colour for s in Shape])
)
_CLASS_WEIGHTS = tuple(1.0 / (rank + 1) for rank in range(len(_CLASSES)))


def _zipf_classes(rng: np.random.Generator, k: int) -> list[tuple[Colour, Shape]]:
    """``k`` distinct colour+shape classes, Zipf-weighted."""
    w = np.asarray(_CLASS_WEIGHTS)
    idx = rng.choice(len(_CLASSES), size=k, replace=False, p=w / w.sum())
    return [_CLASSES[int(i)] for i in idx]


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _caption_with(scene: Scene, tpl: Template, rng: np.random.Generator) -> str | None:
    """``scene`` captioned with one given template (None if the scene lacks a slot it needs).

    :func:`.language.caption` picks its template at random; an album needs the same template for every
    image, so fill the template from the language module's slot table directly.
    """
    slots = _scene_slots(scene, rng)
    if not tpl.fields <= set(slots):
        return None
    text = tpl.fill(**slots)
    return _capitalise(text) if tpl.kind == "caption_long" else text


# --- pairs and videos -----------------------------------------------------------------------------------


def pair_sample(rng: np.random.Generator, image_size: int = 64) -> tuple[Image.Image, str]:
    """One scene and a training caption (short or long, equally often)."""
    scene = sample_scene(rng)
    text = caption(scene, rng, kind=choice(rng, CAPTION_KINDS), split="train").text
    return render_scene(scene, image_size), text


def video_sample(rng: np.random.Generator, image_size: int = 64) -> tuple[list[Image.Image], str]:
    """An 8-frame clip and either its caption (60%) or a Q/A sentence about its event in a training format."""
    clip = sample_clip(rng, n_events=2 if rng.random() < 0.25 else 1)
    text = None
    if rng.random() >= 0.6:
        qa = clip_question(clip, rng, split="train")
        if qa is not None:
            text = fill_qa(choice(rng, TRAIN_QA_FORMATS), qa.question, qa.answer)
    if text is None:
        text = clip_caption(clip, rng, split="train").text
    return render_clip(clip, image_size), text


# --- interleaved documents ------------------------------------------------------------------------------


@dataclass
class Document:
    """An interleaved document before encoding: sentences, each optionally preceded by one image."""

    doc_type: str
    items: list[tuple[Image.Image | None, str]]
    meta: dict[str, Any]

    def record(self) -> tuple[dict[str, Any], list[Image.Image]]:
        """The MMC4 JSON object (``text_list``, ``image_info``, metadata) and the images in order."""
        texts: list[str] = []
        infos: list[dict[str, Any]] = []
        images: list[Image.Image] = []
        for image, sentence in self.items:
            if image is not None:
                infos.append({"image_name": f"img{len(images)}.png", "matched_text_index": len(texts)})
                images.append(image)
            texts.append(sentence)
        return {"text_list": texts, "image_info": infos, "doc_type": self.doc_type, **self.meta}, images


_ALBUM_INTROS = ("some pictures.", "a few pictures of shapes.", "here are some pictures.", "pictures:")


def _album(rng: np.random.Generator, size: int) -> Document:
    n = int(rng.integers(3, 6))
    kind = choice(rng, CAPTION_KINDS, p=[0.6, 0.4])  # long captions cost more of the 256-token window
    tpl = choice(rng, templates(kind, "train"))
    prefix = caption_prefix(rng)
    theme = _zipf_classes(rng, 1)[0] if rng.random() < 0.5 else None
    include = [ObjectSpec(colour=theme[0], shape=theme[1])] if theme else []
    items: list[tuple[Image.Image | None, str]] = []
    if rng.random() < 0.3:
        items.append((None, choice(rng, _ALBUM_INTROS)))
    while len([i for i in items if i[0] is not None]) < n:
        scene = sample_scene(rng, include=include)
        text = _caption_with(scene, tpl, rng)
        if text is not None:  # e.g. "from left to right" needs well separated objects: draw another scene
            items.append((render_scene(scene, size), prefix + text))
    meta = {"template_id": tpl.id, "caption_prefix": prefix, "theme": " ".join(map(str, theme)) if theme else None}
    return Document("album", items, meta)


def _quiz(rng: np.random.Generator, size: int) -> Document:
    n = int(rng.integers(3, 6))
    fmt = document_qa_format(rng)
    fixed_kind = choice(rng, QUESTION_KINDS) if rng.random() < 0.5 else None
    items: list[tuple[Image.Image | None, str]] = []
    # One Q/A per image, so that an answer is always followed by <|endofchunk|> and the next image. A second,
    # image-less Q/A after the answer taught the model to run on after answering ("green question: what is"
    # in 9 of 96 held-out VQA answers at 4 shots, 16 at 8 shots).
    while len(items) < n:
        scene = sample_scene(rng)
        qa = question(scene, rng, kind=fixed_kind, split="train")
        if qa is None:  # this scene has no unambiguous question of that kind
            continue
        items.append((render_scene(scene, size), fill_qa(fmt, qa.question, qa.answer)))
    return Document("quiz", items, {"qa_format": fmt, "question_kind": fixed_kind})


def _novel_words(rng: np.random.Generator, size: int) -> Document:
    # Documents of 4-8 images: a training window keeps the first 5 (max_media) and the sentences of the dropped
    # ones, so a long document ends in names with no picture of their own. Measured: five-image documents (2-3
    # words, all in one window) left the novel-word task at chance (19.5% on 384 queries at 16 shots) and VQA
    # level (41.9 vs 40.1%), with captioning lower (CIDEr 183 vs 203 at 4 shots), one run each; not used.
    n_cat = int(choice(rng, [2, 3, 4], p=[0.45, 0.35, 0.2]))
    words = training_words(rng, n_cat)
    by_shape = rng.random() < 0.6
    if by_shape:
        cats: list[tuple[Colour | None, Shape]] = [(None, s) for s in shuffled(rng, list(Shape))[:n_cat]]
    else:
        cats = list(_zipf_classes(rng, n_cat))
    order = [c for c in range(n_cat) for _ in range(2)]
    if n_cat == 2 and rng.random() < 0.5:
        order.append(int(rng.integers(n_cat)))
    order = shuffled(rng, order)
    phrase = choice(rng, NOVEL_WORD_PHRASES)
    items: list[tuple[Image.Image | None, str]] = []
    objects = []
    for c in order:
        colour, shape = cats[c]
        # One object per image: the category is then the whole picture, as in Frozen's binding task.
        scene = sample_scene(rng, min_objects=1, max_objects=1, include=[ObjectSpec(shape=shape, colour=colour)])
        items.append((render_scene(scene, size), phrase.format(word=words[c])))
        objects.append([str(scene.objects[0].colour), str(scene.objects[0].shape)])
    bindings = [
        {"word": w, "shape": str(s), "colour": None if col is None else str(col)}
        for w, (col, s) in zip(words, cats, strict=True)
    ]
    meta = {"bindings": bindings, "image_categories": order, "objects": objects, "phrase": phrase}
    return Document("novel_words", items, meta)


_COMPARE_SENTENCES = {
    "more": "more objects than the last picture.",
    "fewer": "fewer objects than the last picture.",
    "same": "as many objects as the last picture.",
}


def _compare(rng: np.random.Generator, size: int) -> Document:
    n = int(rng.integers(3, 5))
    tpl = choice(rng, templates("caption_short", "train"))
    items: list[tuple[Image.Image | None, str]] = []
    previous: int | None = None
    for _ in range(n):
        scene = sample_scene(rng)
        text = _caption_with(scene, tpl, rng)
        assert text is not None  # short-caption templates need only slots every scene has
        items.append((render_scene(scene, size), text))
        count = len(scene.objects)
        if previous is not None:
            key = "more" if count > previous else "fewer" if count < previous else "same"
            items.append((None, _COMPARE_SENTENCES[key]))
        previous = count
    return Document("compare", items, {"template_id": tpl.id})


# Proportions of the document types; see the module docstring for why each is there.
DOC_TYPES: dict[str, tuple[float, Callable[[np.random.Generator, int], Document]]] = {
    "album": (0.30, _album),
    "quiz": (0.35, _quiz),
    "novel_words": (0.25, _novel_words),
    "compare": (0.10, _compare),
}


def interleaved_document(rng: np.random.Generator, image_size: int = 64, doc_type: str | None = None) -> Document:
    """One training document of ``doc_type`` (drawn with the :data:`DOC_TYPES` proportions if None)."""
    names = list(DOC_TYPES)
    if doc_type is None:
        doc_type = choice(rng, names, p=[DOC_TYPES[n][0] for n in names])
    if doc_type not in DOC_TYPES:
        raise ValueError(f"unknown document type {doc_type!r}; expected one of {names}")
    return DOC_TYPES[doc_type][1](rng, image_size)


# --- shards ---------------------------------------------------------------------------------------------


class _ShardWriter:
    """Consecutive ``{prefix}-NNNNNN.tar`` shards in one folder; each written to a temporary name, then renamed."""

    def __init__(self, out_dir: Path, prefix: str, per_shard: int) -> None:
        self.out_dir, self.prefix, self.per_shard = out_dir, prefix, per_shard
        self.paths: list[Path] = []
        self._tar: Any = None  # a webdataset.TarWriter while a shard is open
        self._tmp: Path | None = None
        self._count = 0
        # Stale shards of an earlier, larger build would otherwise be picked up by a glob.
        for old in out_dir.glob(f"{prefix}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"):
            old.unlink()

    def write(self, sample: dict[str, Any]) -> None:
        if self._tar is None:
            path = self.out_dir / f"{self.prefix}-{len(self.paths):06d}.tar"
            self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            from flamingo_vlm.data.shards import tar_writer  # here: importing webdataset takes about a second

            self._tar = tar_writer(str(self._tmp))
            self.paths.append(path)
        self._tar.write(sample)
        self._count += 1
        if self._count == self.per_shard:
            self._commit()

    def _commit(self) -> None:
        assert self._tar is not None and self._tmp is not None
        self._tar.close()
        os.replace(self._tmp, self.paths[-1])
        self._tar, self._tmp, self._count = None, None, 0

    def close(self) -> list[Path]:
        if self._tar is not None:
            self._commit()
        return self.paths


def _pair_raw(rng: np.random.Generator, key: str, size: int) -> dict[str, Any]:
    image, text = pair_sample(rng, size)
    return {"__key__": key, "png": png_bytes(image), "txt": text.encode("utf-8")}


def _video_raw(rng: np.random.Generator, key: str, size: int) -> dict[str, Any]:
    frames, text = video_sample(rng, size)
    raw: dict[str, Any] = {"__key__": key, "txt": text.encode("utf-8")}
    raw.update({f"frame{t:03d}.png": png_bytes(f) for t, f in enumerate(frames)})
    return raw


def _document_raw(rng: np.random.Generator, key: str, size: int) -> dict[str, Any]:
    record, images = interleaved_document(rng, size).record()
    raw: dict[str, Any] = {"__key__": key, "json": json.dumps(record, ensure_ascii=False).encode("utf-8")}
    raw.update({info["image_name"]: png_bytes(img) for info, img in zip(record["image_info"], images, strict=True)})
    return raw


_DEFAULT_PER_SHARD = {"pairs": 1000, "video": 200, "interleaved": 500}
_MAKERS: dict[str, tuple[int, Callable[[np.random.Generator, str, int], dict[str, Any]]]] = {
    "pairs": (_STREAM_PAIRS, _pair_raw),
    "video": (_STREAM_VIDEO, _video_raw),
    "interleaved": (_STREAM_DOCS, _document_raw),
}


def _raw_samples(kind: str, seed: int, count: int, size: int) -> Iterator[dict[str, Any]]:
    stream, make = _MAKERS[kind]
    for i in range(count):
        yield make(sample_rng(seed, stream, i), f"{i:08d}", size)


def build_training_sets(
    out_dir: str | os.PathLike,
    *,
    seed: int,
    num_pairs: int,
    num_videos: int,
    num_documents: int,
    image_size: int = 64,
    samples_per_shard: int | None = None,
    progress: bool = True,
) -> dict[str, str]:
    """Write the three training sets as shards in ``out_dir``; return the brace pattern of each kind.

    Shards are ``pairs-NNNNNN.tar``, ``video-NNNNNN.tar`` and ``interleaved-NNNNNN.tar`` (see the module
    docstring for their contents). ``samples_per_shard`` applies to every kind; by default 1000 pairs, 200
    videos or 500 documents per shard (a few MB each). A kind with count 0 is skipped (no key in the result).
    """
    from flamingo_vlm.data.shards import brace_pattern  # here: flamingo_vlm.data imports torch and transformers

    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"pairs": num_pairs, "video": num_videos, "interleaved": num_documents}
    patterns: dict[str, str] = {}
    for kind, count in counts.items():
        if count <= 0:
            continue
        writer = _ShardWriter(out, kind, samples_per_shard or _DEFAULT_PER_SHARD[kind])
        samples = _raw_samples(kind, seed, count, image_size)
        for raw in tqdm(samples, total=count, desc=f"tiny-world {kind}", unit="sample", disable=not progress):
            writer.write(raw)
        patterns[kind] = brace_pattern(writer.close())
    return patterns


def iter_document_records(pattern_or_paths: str | Sequence[str | os.PathLike]) -> Iterator[dict[str, Any]]:
    """The JSON objects of interleaved shards (no image decoding): for checks and statistics."""
    from flamingo_vlm.data.stream import expand_shards, read_raw_records  # heavy import, only when used

    paths = expand_shards(pattern_or_paths) if isinstance(pattern_or_paths, str) else list(pattern_or_paths)
    for path in paths:
        for raw in read_raw_records(str(path)):
            yield json.loads(raw["json"])
