"""Held-out tiny-world EVALUATION sets in the standard formats an evaluation harness reads.

Each set has an ``eval`` split (the queries) and a ``support`` split (where few-shot demonstrations come from),
drawn from random streams that no training set uses, so every scene is fresh; the two splits never share an
image. Questions and captions mix training and HELD-OUT template wordings. Every split also has a
``records.jsonl`` with the structured truth (the scene or clip, and for questions what was asked) from which
each answer can be recomputed (:func:`recompute_answer`) and each image re-rendered (:func:`scene_from_dict`).

Layout under ``out_dir`` (``{split}`` is ``eval`` or ``support``; see also the README.md written there):

* ``coco/{split}/captions.json`` (COCO captions: ``images`` [{id, file_name, width, height}] with ``file_name``
  ``images/{id}.png`` relative to the JSON's folder, ``annotations`` [{id, image_id, caption}], 5 references per
  image: 2 in held-out wordings), ``coco/{split}/images/{id}.png``;
* ``vqa/{split}/questions.json`` and ``annotations.json`` (VQAv2; 10 identical answers per question),
  ``vqa/{split}/images/{image_id}.png``;
* ``video_qa/{split}/video_qa.json`` ([{id, frames: 8 paths relative to the JSON's folder, question, answer,
  question_type}]),
  ``video_qa/{split}/clips/{id}/frame000.png`` ...;
* ``novel_words/{split}/novel_words.jsonl`` ({"id": int, "image": path relative to the JSONL's folder, "label": word}),
  ``novel_words_classes.json`` (the K words), ``images/``: K made-up words (from the reserved pool that no
  training text uses, see :func:`.datasets.reserved_eval_words`) bound to K shapes for this set only;
* ``shapes/{split}/shapes.jsonl`` + ``shapes_classes.json`` + ``images/``: the same task with ordinary shape names.

Ids: the eval split numbers its images from 1, the support split from :data:`SUPPORT_ID_OFFSET` + 1, so ids never
collide across splits; a question id is ``image_id * 10 + k`` and a caption id ``image_id * 10 + k``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ._random import choice, shuffled
from .datasets import png_bytes, reserved_eval_words, sample_rng
from .geometry import Relation, position_name, relation_truth
from .language import QA, caption, clip_question, object_phrase, question
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
    sample_scene,
)
from .templates import QUESTION_KINDS
from .video import Clip, Event, EventKind, render_clip, sample_clip
from .words import is_novel

__all__ = [
    "SUPPORT_ID_OFFSET",
    "VIDEO_QUESTION_KINDS",
    "build_eval_sets",
    "clip_from_dict",
    "clip_to_dict",
    "novel_word_binding",
    "recompute_answer",
    "scene_from_dict",
    "scene_to_dict",
]

SUPPORT_ID_OFFSET = 1_000_000
# Video QA asks about motion direction, colour change, appearance and disappearance (MSVD-QA-like).
VIDEO_QUESTION_KINDS: tuple[str, ...] = ("clip_move", "clip_colour", "clip_appear", "clip_disappear")
_HELDOUT_P = 0.5  # share of questions asked in a held-out wording

# Random streams: distinct from every training stream (1-3, 11-12), one per set and split.
_STREAMS = {
    ("coco", "eval"): 21, ("coco", "support"): 22,
    ("vqa", "eval"): 23, ("vqa", "support"): 24,
    ("video_qa", "eval"): 25, ("video_qa", "support"): 26,
    ("novel_words", "eval"): 27, ("novel_words", "support"): 28,
    ("shapes", "eval"): 29, ("shapes", "support"): 30,
}  # fmt: skip
_STREAM_BINDING = 31

# --- structured records ---------------------------------------------------------------------------------


def _obj_to_dict(o: SceneObject | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {"shape": str(o.shape), "colour": str(o.colour), "size": str(o.size), "x": o.x, "y": o.y}


def _obj_from_dict(d: dict[str, Any] | None) -> SceneObject | None:
    if d is None:
        return None
    return SceneObject(Shape(d["shape"]), Colour(d["colour"]), Size(d["size"]), float(d["x"]), float(d["y"]))


def _bg_to_dict(b: Background) -> dict[str, Any]:
    return {"kind": str(b.kind), "colours": [str(c) for c in b.colours], "direction": b.direction,
            "texture_seed": b.texture_seed}


def _bg_from_dict(d: dict[str, Any]) -> Background:
    return Background(BackgroundKind(d["kind"]), tuple(Colour(c) for c in d["colours"]), d["direction"],
                      int(d["texture_seed"]))


def scene_to_dict(scene: Scene) -> dict[str, Any]:
    """A JSON-able scene; floats round-trip exactly, so :func:`scene_from_dict` re-renders identical pixels."""
    return {"background": _bg_to_dict(scene.background), "objects": [_obj_to_dict(o) for o in scene.objects]}


def scene_from_dict(d: dict[str, Any]) -> Scene:
    """The scene of :func:`scene_to_dict`."""
    return Scene(_bg_from_dict(d["background"]), tuple(_obj_from_dict(o) for o in d["objects"]))


def clip_to_dict(clip: Clip) -> dict[str, Any]:
    """A JSON-able clip (tracks with ``null`` where an object is absent, and the events)."""
    events = [
        {"kind": str(e.kind), "track": e.track, "direction": None if e.direction is None else str(e.direction),
         "from_colour": None if e.from_colour is None else str(e.from_colour),
         "to_colour": None if e.to_colour is None else str(e.to_colour), "frame": e.frame}
        for e in clip.events
    ]
    tracks = [[_obj_to_dict(o) for o in tr] for tr in clip.tracks]
    return {"background": _bg_to_dict(clip.background), "tracks": tracks, "events": events}


def clip_from_dict(d: dict[str, Any]) -> Clip:
    """The clip of :func:`clip_to_dict`."""

    def opt(enum, value):
        return None if value is None else enum(value)

    events = tuple(
        Event(EventKind(e["kind"]), int(e["track"]), opt(Direction, e["direction"]), opt(Colour, e["from_colour"]),
              opt(Colour, e["to_colour"]), e["frame"])
        for e in d["events"]
    )
    tracks = tuple(tuple(_obj_from_dict(o) for o in tr) for tr in d["tracks"])
    return Clip(_bg_from_dict(d["background"]), tracks, events)


def _spec_to_dict(s: ObjectSpec | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {a: None if getattr(s, a) is None else str(getattr(s, a)) for a in ("shape", "colour", "size")}


def _spec_from_dict(d: dict[str, Any] | None) -> ObjectSpec | None:
    if d is None:
        return None
    return ObjectSpec(shape=None if d["shape"] is None else Shape(d["shape"]),
                      colour=None if d["colour"] is None else Colour(d["colour"]),
                      size=None if d["size"] is None else Size(d["size"]))


def _qa_record(qa: QA) -> dict[str, Any]:
    return {"kind": qa.kind, "question": qa.question, "answer": qa.answer, "template_id": qa.template_id,
            "held_out": qa.held_out, "subject": _spec_to_dict(qa.subject), "other": _spec_to_dict(qa.other),
            "relation": None if qa.relation is None else str(qa.relation), "objects": list(qa.objects)}


def _only(indices: list[int], what: str) -> int:
    if len(indices) != 1:
        raise ValueError(f"{what} matches {len(indices)} objects, not exactly one")
    return indices[0]


def recompute_answer(record: dict[str, Any]) -> str:
    """The answer to a VQA or video-QA record, worked out again from its scene/clip and structured question.

    Independent of how :mod:`.language` chose the answer: it re-resolves the referring expressions
    (``subject``/``other``) against the scene and reads the asked attribute, count, position, relation or event.
    """
    kind = record["kind"]
    subject, other = _spec_from_dict(record.get("subject")), _spec_from_dict(record.get("other"))
    if "clip" in record:
        clip = clip_from_dict(record["clip"])
        if kind in ("clip_appear", "clip_disappear"):
            want = EventKind.APPEAR if kind == "clip_appear" else EventKind.DISAPPEAR
            event = [e for e in clip.events if e.kind is want]
            track = _only([e.track for e in event], kind)
            return object_phrase(clip.track_objects(track)[0])
        assert subject is not None
        track = _only([t for t in range(len(clip.tracks)) if any(subject.matches(o) for o in clip.track_objects(t))],
                      "subject")
        event = clip.event_for(track)
        if kind == "clip_move":
            return str(event.direction)
        if kind == "clip_colour":
            return str(event.to_colour)
        if event is None:
            return "stays still"
        return {EventKind.MOVE: f"moves {event.direction}", EventKind.COLOUR_CHANGE: f"turns {event.to_colour}",
                EventKind.APPEAR: "appears", EventKind.DISAPPEAR: "disappears"}[event.kind]
    scene = scene_from_dict(record["scene"])
    objs = scene.objects
    if kind == "background":
        return str(scene.background.colours[0])
    if kind == "count":
        return str(len(scene.matching(subject)))
    if kind == "exists":
        return "yes" if scene.matching(subject) else "no"
    if kind == "relation_what":
        j = _only(scene.matching(other), "other")
        rel = Relation(record["relation"])
        i = _only([i for i in range(len(objs)) if i != j and relation_truth(objs[i], objs[j], rel) is True], "hit")
        return object_phrase(objs[i])
    i = _only(scene.matching(subject), "subject")
    if kind in ("colour", "shape"):
        return str(getattr(objs[i], kind))
    if kind == "position":
        return position_name(objs[i])
    if kind == "relation_yesno":
        j = _only(scene.matching(other), "other")
        return "yes" if relation_truth(objs[i], objs[j], Relation(record["relation"])) else "no"
    raise ValueError(f"unknown question kind {kind!r}")


# --- writing helpers ------------------------------------------------------------------------------------


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _fresh_dir(path: Path) -> Path:
    """An empty folder (an earlier, larger build would otherwise leave stale images behind)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _question_split(rng: np.random.Generator) -> str:
    return "heldout" if rng.random() < _HELDOUT_P else "train"


# --- captioning (COCO) ----------------------------------------------------------------------------------


def _captions_for(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[dict[str, Any]]:
    """``n`` distinct references: one short and one long caption in held-out wordings, the rest training."""
    plan = [("caption_short", "heldout"), ("caption_long", "heldout")]
    plan += [(choice(rng, ["caption_short", "caption_long"]), "train") for _ in range(n - 2)]
    out: list[dict[str, Any]] = []
    for kind, split in plan:
        for attempt in range(20):
            cap = caption(scene, rng, kind=kind, split=split)
            if attempt == 19 or all(cap.text != c["caption"] for c in out):
                break
        out.append({"caption": cap.text, "template_ids": list(cap.template_ids), "held_out": cap.held_out})
    return shuffled(rng, out)


def _build_coco(root: Path, stream: int, seed: int, n: int, first_id: int, size: int, bar: tqdm) -> dict[str, str]:
    images_dir = _fresh_dir(root / "images")
    images, annotations, records = [], [], []
    for i in range(n):
        rng = sample_rng(seed, stream, i)
        image_id = first_id + i
        scene = sample_scene(rng)
        (images_dir / f"{image_id}.png").write_bytes(png_bytes(render_scene(scene, size)))
        caps = _captions_for(scene, rng)
        # file_name relative to captions.json's folder, like the JSONL sets' paths, so a loader needs no
        # separate image folder argument.
        images.append({"id": image_id, "file_name": f"images/{image_id}.png", "width": size, "height": size})
        annotations += [{"id": image_id * 10 + k, "image_id": image_id, "caption": c["caption"]}
                        for k, c in enumerate(caps)]
        records.append({"image_id": image_id, "scene": scene_to_dict(scene), "captions": caps})
        bar.update()
    _write_json(root / "captions.json", {"images": images, "annotations": annotations})
    _write_jsonl(root / "records.jsonl", records)
    return {"captions": str(root / "captions.json"), "images": str(images_dir), "records": str(root / "records.jsonl")}


# --- VQA (VQAv2) ----------------------------------------------------------------------------------------

_ANSWER_TYPES = {"exists": "yes/no", "relation_yesno": "yes/no", "count": "number"}


def _build_vqa(root: Path, stream: int, seed: int, n: int, first_id: int, size: int, bar: tqdm, *,
               per_image: int) -> dict[str, str]:
    images_dir = _fresh_dir(root / "images")
    questions, annotations, records = [], [], []
    for i in range(n):
        rng = sample_rng(seed, stream, i)
        image_id = first_id + i
        scene = sample_scene(rng, min_objects=2)
        qas: list[QA] = []
        for kind in shuffled(rng, list(QUESTION_KINDS)):  # distinct kinds per image
            qa = question(scene, rng, kind=kind, split=_question_split(rng))
            if qa is not None:
                qas.append(qa)
            if len(qas) == per_image:
                break
        (images_dir / f"{image_id}.png").write_bytes(png_bytes(render_scene(scene, size)))
        for k, qa in enumerate(qas):
            qid = image_id * 10 + k
            questions.append({"question_id": qid, "image_id": image_id, "question": qa.question})
            annotations.append({
                "question_id": qid,
                "image_id": image_id,
                "question_type": qa.kind,
                "answer_type": _ANSWER_TYPES.get(qa.kind, "other"),
                "multiple_choice_answer": qa.answer,
                # Ten annotators who all agree: the synthetic answer is unambiguous by construction.
                "answers": [{"answer": qa.answer, "answer_confidence": "yes", "answer_id": a} for a in range(1, 11)],
            })
            records.append({"question_id": qid, "image_id": image_id, **_qa_record(qa), "scene": scene_to_dict(scene)})
        bar.update()
    _write_json(root / "questions.json", {"questions": questions})
    _write_json(root / "annotations.json", {"annotations": annotations})
    _write_jsonl(root / "records.jsonl", records)
    return {"questions": str(root / "questions.json"), "annotations": str(root / "annotations.json"),
            "images": str(images_dir), "records": str(root / "records.jsonl")}


# --- video QA -------------------------------------------------------------------------------------------

_KIND_EVENTS = {"clip_move": EventKind.MOVE, "clip_colour": EventKind.COLOUR_CHANGE,
                "clip_appear": EventKind.APPEAR, "clip_disappear": EventKind.DISAPPEAR}


def _build_video_qa(root: Path, stream: int, seed: int, n: int, first_id: int, size: int,
                    bar: tqdm) -> dict[str, str]:
    clips_dir = _fresh_dir(root / "clips")
    entries, records = [], []
    for i in range(n):
        rng = sample_rng(seed, stream, i)
        clip_id = first_id + i
        kind = VIDEO_QUESTION_KINDS[i % len(VIDEO_QUESTION_KINDS)]  # balanced kinds
        split = _question_split(rng)
        while True:
            clip = sample_clip(rng, event_kinds=[_KIND_EVENTS[kind]], n_events=1 + int(rng.random() < 0.2))
            qa = clip_question(clip, rng, kind=kind, split=split)
            if qa is not None:
                break
        folder = clips_dir / str(clip_id)
        folder.mkdir()
        frames = []
        for t, frame in enumerate(render_clip(clip, size)):
            (folder / f"frame{t:03d}.png").write_bytes(png_bytes(frame))
            frames.append(f"clips/{clip_id}/frame{t:03d}.png")
        entries.append({"id": clip_id, "frames": frames, "question": qa.question, "answer": qa.answer,
                        "question_type": kind.removeprefix("clip_")})  # move, colour, appear, disappear
        records.append({"id": clip_id, **_qa_record(qa), "clip": clip_to_dict(clip)})
        bar.update()
    _write_json(root / "video_qa.json", entries)
    _write_jsonl(root / "records.jsonl", records)
    return {"video_qa": str(root / "video_qa.json"), "clips": str(clips_dir), "records": str(root / "records.jsonl")}


# --- classification (novel words, shape names) ----------------------------------------------------------


def _build_classification(root: Path, stream: int, seed: int, n: int, first_id: int, size: int, bar: tqdm, *,
                          name: str, labels: list[str], shapes: list[Shape]) -> dict[str, str]:
    """``n`` single-object images; image ``i`` shows ``shapes[i % K]`` (balanced) and is labelled ``labels[i % K]``."""
    images_dir = _fresh_dir(root / "images")
    rows, records = [], []
    for i in range(n):
        rng = sample_rng(seed, stream, i)
        image_id = first_id + i
        c = i % len(labels)
        # One object, any colour, size and background: only the shape carries the class.
        scene = sample_scene(rng, min_objects=1, max_objects=1, include=[ObjectSpec(shape=shapes[c])])
        (images_dir / f"{image_id}.png").write_bytes(png_bytes(render_scene(scene, size)))
        # "id" keeps eval and support examples apart when a harness indexes them by id.
        rows.append({"id": image_id, "image": f"images/{image_id}.png", "label": labels[c]})
        records.append({"image_id": image_id, "image": f"images/{image_id}.png", "label": labels[c],
                        "shape": str(shapes[c]), "scene": scene_to_dict(scene)})
        bar.update()
    _write_jsonl(root / f"{name}.jsonl", rows)
    _write_json(root / f"{name}_classes.json", labels)
    _write_jsonl(root / "records.jsonl", records)
    return {"jsonl": str(root / f"{name}.jsonl"), "classes": str(root / f"{name}_classes.json"),
            "images": str(images_dir), "records": str(root / "records.jsonl")}


def novel_word_binding(seed: int, k: int = 5) -> dict[str, str]:
    """The made-up word -> shape binding of the novel-word eval set built with ``seed`` (words from the reserved
    pool, shapes a random ``k`` of the 8)."""
    if not 1 <= k <= len(Shape):
        raise ValueError(f"k must be in [1, {len(Shape)}], got {k}")
    rng = sample_rng(seed, _STREAM_BINDING, 0)
    pool = sorted(reserved_eval_words())
    words = [pool[int(j)] for j in rng.choice(len(pool), size=k, replace=False)]
    shapes = shuffled(rng, list(Shape))[:k]
    assert all(is_novel(w) for w in words) and set(words) <= reserved_eval_words()
    return {w: str(s) for w, s in zip(words, shapes, strict=True)}


# --- README and entry point -----------------------------------------------------------------------------

_README = """# Tiny-world evaluation sets

Held-out scenes and clips (random streams no training set uses), seed {seed}, images {size}x{size} PNG.
Every set has an `eval` split (queries) and a `support` split (few-shot demonstrations come only from it);
the splits never share an image. Eval ids start at 1, support ids at {offset}.
Each split has `records.jsonl`: the structured scene/clip and question behind every entry, from which
`flamingo_vlm.tinyworld.evalsets.recompute_answer` recomputes the answer and `scene_from_dict` re-renders
the image. Prompts follow the paper: captioning `<image>Output: {{caption}}<|endofchunk|>`, VQA
`<image>Question: {{q}} Answer: {{a}}<|endofchunk|>`; these formats never occur in the training data.

| set | files (per split) | size (eval / support) |
|---|---|---|
| captioning (COCO format) | `coco/{{split}}/captions.json` (`file_name` = `images/{{id}}.png`, relative to it) | {coco} / {coco_s} images, 5 captions each |
| VQA (VQAv2 format) | `vqa/{{split}}/questions.json`, `annotations.json`, `images/{{image_id}}.png` (image pattern `{{image_id}}.png`) | {vqa} / {vqa_s} questions |
| video QA | `video_qa/{{split}}/video_qa.json`, `clips/{{id}}/frame000.png`... | {video} / {video_s} clips |
| novel words (classification) | `novel_words/{{split}}/novel_words.jsonl`, `novel_words_classes.json`, `images/` | {novel} / {novel_s} images, {k} classes |
| shape names (classification) | `shapes/{{split}}/shapes.jsonl`, `shapes_classes.json`, `images/` | {shapes} / {shapes_s} images, 8 classes |

- **Captioning**: 5 references per image, 2 in held-out wordings (one short, one long). Metric: CIDEr.
- **VQA**: up to {per_image} questions of different kinds per image (colour, shape, count as a digit,
  position such as "top left", yes/no existence and relations, "what is left of ..."), about half in held-out
  wordings; `answers` holds 10 identical answers (VQA accuracy). `question_type` is the question kind,
  `answer_type` is yes/no, number or other.
- **Video QA**: 8 frames per clip (paths relative to `video_qa.json`'s folder), questions on the direction of
  motion, colour change, what appears and what disappears, in equal numbers, about half in held-out wordings.
  Metric: top-1 (exact match).
- **Novel words**: {k} made-up words bound to {k} shapes only in this set:
  {binding}. The words come from a reserved pool that no training document or LM-corpus line contains, so 0-shot accuracy is at chance; the
  binding can only be learned from the prompt's support examples (Frozen's fast concept binding). One object per
  image, any colour, size and background. Close-ended: score each class word, pick the best (top-1).
- **Shape names**: the same task with the ordinary shape names.
"""


def build_eval_sets(
    out_dir: str | os.PathLike,
    *,
    seed: int,
    num_captioning: int = 500,
    num_vqa_images: int = 500,
    questions_per_image: int = 3,
    num_video_qa: int = 500,
    num_novel_words: int = 500,
    num_shapes: int = 400,
    num_support: int = 300,
    novel_k: int = 5,
    image_size: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Write every evaluation set under ``out_dir``; return ``{set: {split: {file role: path}}}`` and ``"readme"``.

    Sizes count eval-split images (VQA: images; each gets ``questions_per_image`` questions); each support split
    has ``num_support`` images or clips. Replaces any earlier build of these sets in ``out_dir``.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 1 <= questions_per_image <= 9:
        raise ValueError("questions_per_image must be in [1, 9] (question ids are image_id * 10 + k)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    binding = novel_word_binding(seed, novel_k)
    words, bound_shapes = list(binding), [Shape(s) for s in binding.values()]
    sizes = {"coco": num_captioning, "vqa": num_vqa_images, "video_qa": num_video_qa,
             "novel_words": num_novel_words, "shapes": num_shapes}
    # Every builder takes (root, stream, seed, n, first_id, image_size, bar); set-specific options are bound here.
    builders: dict[str, Callable[..., dict[str, str]]] = {
        "coco": _build_coco,
        "vqa": partial(_build_vqa, per_image=questions_per_image),
        "video_qa": _build_video_qa,
        "novel_words": partial(_build_classification, name="novel_words", labels=words, shapes=bound_shapes),
        "shapes": partial(_build_classification, name="shapes", labels=[str(s) for s in Shape], shapes=list(Shape)),
    }
    total = sum(sizes.values()) + num_support * len(sizes)
    result: dict[str, Any] = {}
    with tqdm(total=total, desc="tiny-world eval sets", unit="item", disable=not progress) as bar:
        for name, build in builders.items():
            result[name] = {}
            for split, n, first in (("eval", sizes[name], 1), ("support", num_support, SUPPORT_ID_OFFSET + 1)):
                root = out / name / split
                root.mkdir(parents=True, exist_ok=True)
                result[name][split] = build(root, _STREAMS[(name, split)], seed, n, first, image_size, bar)
    with open(out / "vqa" / "eval" / "questions.json", encoding="utf-8") as f:
        n_questions = len(json.load(f)["questions"])
    with open(out / "vqa" / "support" / "questions.json", encoding="utf-8") as f:
        n_questions_s = len(json.load(f)["questions"])
    readme = _README.format(
        seed=seed, size=image_size, offset=SUPPORT_ID_OFFSET + 1, coco=num_captioning, coco_s=num_support,
        vqa=n_questions, vqa_s=n_questions_s, video=num_video_qa, video_s=num_support, novel=num_novel_words,
        novel_s=num_support, k=novel_k, shapes=num_shapes, shapes_s=num_support, per_image=questions_per_image,
        binding=", ".join(f"{w} = {s}" for w, s in binding.items()),
    )
    (out / "README.md").write_text(readme, encoding="utf-8")
    result["readme"] = str(out / "README.md")
    result["novel_word_binding"] = binding
    return result
