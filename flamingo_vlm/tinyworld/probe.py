"""What the frozen vision encoder sees: linear probes of its features on the held-out single-object images.

Flamingo can only tell the LM what its frozen vision encoder encodes. Before blaming the resampler or the
cross-attention for a task the model cannot do, ask the encoder: a linear classifier on the mean of its patch
features, and one on all patch features side by side (which keeps where things are; the mean does not), are
trained on part of the held-out single-object set (``data/eval/shapes``) and scored on the rest, for the object's
colour, shape and horizontal position; the better of the two is the attribute's accuracy. Accuracies near the
majority-class rate mean the attribute is not (linearly) in the features.

:func:`attribute_reading` asks the next question on the same images: the encoder encodes it, but does the model
*say* it? It scores the model's choice of colour word and shape word in a caption, with the right image and with
another one. An attribute the probe finds and the model does not name was lost in the resampler or never learned
by the cross-attention.

:func:`image_reliance` asks the whole model the next question: does it use what the encoder sees? It compares
the loss of held-out captions given their own images, images shuffled across the batch, and blank images.

:func:`in_context_copying` asks the frozen LM the question few-shot learning starts from: can it copy from its
context? Flamingo's LM is frozen, so the induction heads that copy ([A][B] ... [A] -> [B]) must come from its
pretraining; without them more examples in a prompt cannot help (the made-up words of the novel-word task, for
one, can only be copied from the prompt's examples).

:func:`in_context_recall` asks the frozen LM the next question: can it pick *which* word to copy by what came
before it (``key value`` or ``key: value`` pairs, or shapes described and named, then one key again)? Naming an
image by the examples needs exactly that, with the key written by the cross-attention instead of in words.
:func:`lm_recall` asks it of a bare causal LM, before it is frozen into a Flamingo.

:func:`lm_scene_qa` asks a bare causal LM what VQA asks the model, with the scene told in words instead of shown:
what the frozen LM cannot work out from words, the cross-attention alone must work out from pixels.

:func:`position_keeping` asks where a lone object's place is lost: in the encoder's features, or in the
resampler's latents (which the Perceiver pools without spatial embeddings, as in the paper)?

:func:`motion_keeping` asks the same of time: does the direction in which an object moves survive the resampler,
which pools a clip's frames into one set of latents with only a learned temporal embedding to tell them apart?

:func:`time_order` asks the whole model what every question about change needs: does it read a clip's frames in
order? It picks between a caption's ending and the ending of the same clip played backwards ("appears" or
"vanishes", "from red to blue" or "from blue to red"), shown the frames in order and reversed; a model that cannot
tell the two orders apart makes the same choice both ways and scores exactly one half, whatever its text prior.

:func:`existence_check` asks what "is there a ...?" needs beyond naming: the answer depends on the question and the
image together, so the model must compare the shape asked about with the shape it sees. Linear probes of its state
at the answer's position tell whether each half, and their match, is there.

:func:`copy_binding` asks whether the images steer that copying: shown a few images each named by a made-up word,
and then an exact copy of one of them, does the model answer with that image's word more often than picking
among the prompt's words would? If not, the novel-word task cannot work at any number of shots.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from flamingo_vlm.model.flamingo import Flamingo
from flamingo_vlm.tinyworld._random import choice
from flamingo_vlm.tinyworld.corpus import _a
from flamingo_vlm.tinyworld.datasets import EVAL_QA_FORMAT, fill_qa, reserved_eval_words
from flamingo_vlm.tinyworld.geometry import position_is_clear, position_name
from flamingo_vlm.tinyworld.language import caption, question
from flamingo_vlm.tinyworld.render import render_scene
from flamingo_vlm.tinyworld.scene import Colour, Scene, Shape, Size, sample_scene
from flamingo_vlm.tinyworld.video import EventKind, render_clip, sample_clip

ATTRIBUTES = ("colour", "shape", "horizontal third")


def _attribute(record: dict[str, Any], name: str) -> str:
    obj = record["scene"]["objects"][0]
    if name == "horizontal third":
        return ("left", "centre", "right")[min(2, int(obj["x"] * 3))]
    return str(obj[name])


def _records(folders: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
    records = []
    for folder in folders:
        path = folder / "records.jsonl"
        if not path.is_file():
            raise ValueError(f"{path} is missing: probe_vision reads the tiny world's data/eval/shapes/<split> "
                             f"folders (run `flamingo data tiny-world OUT_DIR` or the recipe's data stage).")
        for line in path.read_text().splitlines():
            record = json.loads(line)
            records.append((folder / record["image"], record))
    return records


@torch.no_grad()
def _features(model: Flamingo, paths: Sequence[Path], batch_size: int = 64) -> torch.Tensor:
    chunks = []
    for start in range(0, len(paths), batch_size):
        pixels = torch.stack([model.processor.image_processor.preprocess_media(Image.open(p))[0]
                              for p in paths[start: start + batch_size]])  # (n, 3, H, W)
        chunks.append(model.vision(pixels.to(next(model.vision.parameters()).dtype)).float())  # (n, P, D)
    return torch.cat(chunks)


def _linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, classes: int,
                  steps: int = 300) -> torch.Tensor:
    """Multinomial logistic regression (standardised inputs, small L2); returns test predictions.

    In float64: once the classes are separated the gradients fall below float32's normal range, and CPU
    arithmetic on such subnormal numbers made a probe of 8,192 features 13x slower."""
    train_x, test_x = train_x.double(), test_x.double()
    mean, std = train_x.mean(0), train_x.std(0) + 1e-5
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    weight = torch.zeros(train_x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=1e-2)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(train_x @ weight + bias, train_y) + 1e-3 * weight.square().sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return (test_x @ weight + bias).argmax(1)


def probe_vision(model: Flamingo, folders: Sequence[str | Path], *, test_fraction: float = 0.3,
                 seed: int = 0) -> dict[str, dict[str, float]]:
    """Linear-probe accuracy of ``model``'s vision features for each attribute in :data:`ATTRIBUTES`.

    ``folders``: tiny-world single-object sets (``data/eval/shapes/eval`` and ``.../support``). Returns, per
    attribute, ``accuracy`` on the held-out part (the better of ``mean_pooled`` and ``patches``), ``majority`` (the most frequent class's share there, the score
    of a probe that sees nothing) and ``classes``.
    """
    records = _records([Path(f) for f in folders])
    if len(records) < 20:
        raise ValueError(f"probe_vision needs at least 20 images, got {len(records)}.")
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed))
    records = [records[i] for i in order.tolist()]
    features = _features(model, [path for path, _ in records])
    split = int(len(records) * (1 - test_fraction))
    results = {}
    torch.manual_seed(seed)
    for name in ATTRIBUTES:
        labels = [_attribute(record, name) for _, record in records]
        classes = sorted(set(labels))
        y = torch.tensor([classes.index(label) for label in labels])
        test = y[split:]
        views = {"mean_pooled": features.mean(1), "patches": features.flatten(1)}  # (n, D), (n, P*D)
        scores = {view: float((_linear_probe(x[:split], y[:split], x[split:], len(classes)) == test).float().mean())
                  for view, x in views.items()}
        majority = max(float((test == c).float().mean()) for c in range(len(classes)))
        results[name] = {"accuracy": max(scores.values()), **scores, "majority": majority,
                         "classes": float(len(classes))}
    return results


def probe_summary(results: dict[str, dict[str, float]]) -> str:
    """One line for a model card: ``colour 96% (majority 13%), ...``."""
    return ", ".join(f"{name} {100 * r['accuracy']:.0f}% (majority class {100 * r['majority']:.0f}%, "
                     f"{int(r['classes'])} classes)" for name, r in results.items())


@torch.no_grad()
def position_keeping(model: Flamingo, *, images: int = 2000, test_fraction: float = 0.25,
                     seed: int = 0) -> dict[str, float]:
    """How well the grid cell (one of nine) of a lone object survives the visual pathway.

    Renders ``images`` fresh single-object scenes whose object is clearly inside one cell (deterministic by
    ``seed``) and fits a linear probe (:func:`_linear_probe`) on ``1 - test_fraction`` of them, scored on the
    rest, from the encoder's patch features side by side (``encoder``) and from the resampler's latents side by
    side (``latents``: what the cross-attention reads). Returns both accuracies, ``majority`` (the commonest
    cell's share of the scored images) and ``cells``. An ``encoder`` far above ``latents`` means the resampler
    pools the place away, which a training signal that rarely asks where things are allows.
    """
    if images < 20 or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"position_keeping needs images >= 20 and 0 < test_fraction < 1, got {images} and "
                         f"{test_fraction}.")
    rng = np.random.default_rng(seed)
    pictures, cells = [], []
    while len(pictures) < images:
        scene = sample_scene(rng, min_objects=1, max_objects=1)
        if position_is_clear(scene.objects[0]):  # an object on a cell border has no one right answer
            pictures.append(render_scene(scene))  # the world's 64 px; the processor resizes
            cells.append(position_name(scene.objects[0]))
    names = sorted(set(cells))
    y = torch.tensor([names.index(cell) for cell in cells])
    encoder, latents = [], []
    vision_dtype = next(model.vision.parameters()).dtype
    for start in range(0, images, 128):
        pixels = torch.stack([model.processor.image_processor.preprocess_media(picture)[0]
                              for picture in pictures[start: start + 128]])  # (n, 3, H, W)
        encoder.append(model.vision(pixels.to(vision_dtype)).float().flatten(1))  # (n, P*Dv)
        latents.append(model.encode_media(pixels[:, None]).float().flatten(1))  # (n, L*D)
    split = int(images * (1 - test_fraction))
    test = y[split:]
    scores = {name: float((_linear_probe(x[:split], y[:split], x[split:], len(names)) == test).float().mean())
              for name, x in (("encoder", torch.cat(encoder)), ("latents", torch.cat(latents)))}
    majority = max(float((test == c).float().mean()) for c in range(len(names)))
    return {**scores, "majority": majority, "cells": float(len(names))}


def keeping_summary(results: dict[str, float]) -> str:
    """One line for a model card: ``from the encoder's patch features 100%, from the resampler's latents 40% (the
    commonest cell 20%, 9 cells)``."""
    return (f"from the encoder's patch features {100 * results['encoder']:.0f}%, from the resampler's latents "
            f"{100 * results['latents']:.0f}% (the commonest cell {100 * results['majority']:.0f}%, "
            f"{int(results['cells'])} cells)")


MOTION_DIRECTIONS = ("left", "right", "up", "down")


@torch.no_grad()
def motion_keeping(model: Flamingo, *, clips: int = 1600, test_fraction: float = 0.25,
                   seed: int = 0) -> dict[str, float]:
    """How well the direction in which an object moves survives the visual pathway (what video QA's
    "which way does the ... move?" needs).

    Renders ``clips`` fresh 8-frame clips in which one object moves and the others stay still (deterministic by
    ``seed``) and fits a linear probe (:func:`_linear_probe`) for the direction, one of four, on ``1 -
    test_fraction`` of them, scored on the rest: from the encoder's patch features of the first and the last frame
    side by side (``encoder``; where the object was and where it went), and from the resampler's latents of the
    whole clip side by side (``latents``: what the cross-attention reads). Returns both accuracies and
    ``majority`` (the commonest direction's share of the scored clips). Latents at ``majority`` with ``encoder``
    far above it: the resampler pools the frames into one summary and the order of events is lost (its only
    sign of time is the learned temporal embedding added to each frame's features).
    """
    if clips < 20 or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"motion_keeping needs clips >= 20 and 0 < test_fraction < 1, got {clips} and "
                         f"{test_fraction}.")
    rng = np.random.default_rng(seed)
    videos, directions = [], []
    for _ in range(clips):
        clip = sample_clip(rng, event_kinds=[EventKind.MOVE], n_events=1)
        videos.append(render_clip(clip))
        directions.append(MOTION_DIRECTIONS.index(str(clip.events[0].direction)))
    y = torch.tensor(directions)
    encoder, latents = [], []
    vision_dtype = next(model.vision.parameters()).dtype
    preprocess = model.processor.image_processor.preprocess_media
    for start in range(0, clips, 64):
        pixels = torch.stack([preprocess(frames) for frames in videos[start: start + 64]])  # (n, F, 3, H, W)
        ends = pixels[:, [0, -1]]  # (n, 2, 3, H, W): the first and the last frame
        encoder.append(model.vision(ends.flatten(0, 1).to(vision_dtype)).float().reshape(len(ends), -1))  # (n, 2*P*Dv)
        latents.append(model.encode_media(pixels).float().flatten(1))  # (n, L*D)
    split = int(clips * (1 - test_fraction))
    test = y[split:]
    scores = {name: float((_linear_probe(x[:split], y[:split], x[split:], len(MOTION_DIRECTIONS)) == test)
                          .float().mean())
              for name, x in (("encoder", torch.cat(encoder)), ("latents", torch.cat(latents)))}
    majority = max(float((test == c).float().mean()) for c in range(len(MOTION_DIRECTIONS)))
    return {**scores, "majority": majority}


def motion_summary(results: dict[str, float]) -> str:
    """One line for a model card: ``from the encoder's first and last frames 96%, from the resampler's latents 24%
    (the commonest direction 26%, 4 directions)``."""
    return (f"from the encoder's first and last frames {100 * results['encoder']:.0f}%, from the resampler's latents "
            f"{100 * results['latents']:.0f}% (the commonest direction {100 * results['majority']:.0f}%, "
            f"{len(MOTION_DIRECTIONS)} directions)")


TIME_ORDER_KINDS = ("appear", "colour", "move")


def time_order_plan(clips_per_kind: int, seed: int = 0) -> dict[str, list[tuple[list[Image.Image], str, str, str]]]:
    """The clips and captions :func:`time_order` scores: per kind, ``(frames, prompt, true, reversed)``.

    Each clip has exactly one event. ``appear``: an object appears or vanishes (alternately), the prompt names it
    (``"a red star"``) and the two endings are ``appears`` / ``vanishes``; ``colour``: ``"a star changes from"``
    with ``"red to blue"`` / ``"blue to red"``; ``move``: ``"a red star moves"`` with the direction / its
    opposite. In every pair the second ending is what the clip shows played backwards. Training caption wordings
    (``templates.py``: ``clip_cap.appears``, ``.vanishes``, ``.changes``, ``.moves``).
    """
    rng = np.random.default_rng(seed)
    plan: dict[str, list[tuple[list[Image.Image], str, str, str]]] = {kind: [] for kind in TIME_ORDER_KINDS}
    for kind in TIME_ORDER_KINDS:
        for index in range(clips_per_kind):
            event_kind = {"colour": EventKind.COLOUR_CHANGE, "move": EventKind.MOVE}.get(
                kind, EventKind.APPEAR if index % 2 == 0 else EventKind.DISAPPEAR)
            clip = sample_clip(rng, event_kinds=[event_kind], n_events=1)
            event = clip.events[0]
            obj = clip.track_objects(event.track)[0]
            if kind == "appear":
                endings = ("appears", "vanishes") if event_kind is EventKind.APPEAR else ("vanishes", "appears")
                prompt = _a(f"{obj.colour} {obj.shape}")
            elif kind == "colour":
                endings = (f"{event.from_colour} to {event.to_colour}", f"{event.to_colour} to {event.from_colour}")
                prompt = f"{_a(str(obj.shape))} changes from"
            else:
                endings = (str(event.direction), str(event.direction.opposite))
                prompt = f"{_a(f'{obj.colour} {obj.shape}')} moves"
            plan[kind].append((render_clip(clip), prompt, *endings))
    return plan


@torch.no_grad()
def time_order(model: Flamingo, *, clips_per_kind: int = 96, seed: int = 0,
               batch_size: int = 64) -> dict[str, dict[str, float]]:
    """Whether the model reads a clip's frames in order: what "which way does it move?", "what colour does it
    turn?" and "what appears?" need, and what the temporal embedding is there for.

    For fresh one-event clips (:func:`time_order_plan`) the model scores a caption's ending and the ending of the
    same clip played backwards (``appears`` / ``vanishes``, ``from red to blue`` / ``from blue to red``, a
    direction / its opposite) and picks the likelier, once with the frames in order (``ordered``: right when it
    picks the true ending) and once with them reversed (``reversed``: right, for the clip it is then shown, when it
    picks the other). Returns per kind both accuracies and ``follows_order``, their mean: 0.5 for a model that
    cannot tell the two orders apart (the same choice either way, whatever its text prior), 1.0 for one that reads
    time. ``ordered`` alone can sit above 0.5 on a prior (say, "appears" likelier than "vanishes" for an object
    seen in part of the clip); ``follows_order`` cannot.
    """
    if clips_per_kind < 2:
        raise ValueError(f"time_order needs clips_per_kind >= 2, got {clips_per_kind}.")
    model.eval()
    results: dict[str, dict[str, float]] = {}
    for kind, items in time_order_plan(clips_per_kind, seed).items():
        accuracy = {}
        for condition in ("ordered", "reversed"):
            rows = []
            for frames, prompt, true, backwards in items:
                shown = frames if condition == "ordered" else frames[::-1]
                rows += [(prompt, true, shown), (prompt, backwards, shown)]
            scores = torch.cat([_continuation_logprobs(model, rows[start: start + batch_size])
                                for start in range(0, len(rows), batch_size)]).view(len(items), 2)
            picks_true = scores[:, 0] > scores[:, 1]  # (n,): the clip's own ending ranked above the backwards one
            # Played backwards, the clip shows what the other ending says.
            accuracy[condition] = float((picks_true if condition == "ordered" else ~picks_true).float().mean())
        results[kind] = {**accuracy, "follows_order": (accuracy["ordered"] + accuracy["reversed"]) / 2}
    return results


def time_order_summary(results: dict[str, dict[str, float]]) -> str:
    """One line for a model card: ``what appears or vanishes 50%, a colour's change 50%, which way it moves 50%
    (frames in order 62/46/46%, reversed 38/54/54%; 50% = blind to order)``."""
    names = {"appear": "what appears or vanishes", "colour": "a colour's change", "move": "which way it moves"}
    kinds = [k for k in TIME_ORDER_KINDS if k in results]
    follows = ", ".join(f"{names[k]} {100 * results[k]['follows_order']:.0f}%" for k in kinds)
    ordered = "/".join(f"{100 * results[k]['ordered']:.0f}" for k in kinds)
    backwards = "/".join(f"{100 * results[k]['reversed']:.0f}" for k in kinds)
    return f"{follows} (frames in order {ordered}%, reversed {backwards}%; 50% = blind to order)"


READ_ATTRIBUTES = ("colour", "shape")


@torch.no_grad()
def attribute_reading(model: Flamingo, folders: Sequence[str | Path], *, limit: int = 200,
                      batch_size: int = 96) -> dict[str, dict[str, float]]:
    """How often ``model`` names a single object's colour and shape from its image, the question between the
    encoder's probe and the task scores: the encoder may encode an attribute that the model never learned to read.

    ``folders``: tiny-world single-object sets (as :func:`probe_vision`); the first ``limit`` images. After
    ``<image>a picture of a`` (a training caption's opening) the model's choice among the 12 colour words is the
    one it gives the highest probability (all of the word's tokens); after ``<image>a picture of a <colour>``, its
    choice among the 8 shape words. Each is asked with the ``right`` image and with another record's image
    (``shuffled``); returns per attribute those two accuracies and ``chance`` (one over the number of words).
    ``right`` near ``shuffled`` means the attribute is not read.
    """
    from flamingo_vlm.tinyworld.scene import Colour, Shape

    records = _records([Path(f) for f in folders])[:limit]
    if len(records) < 2:
        raise ValueError(f"attribute_reading needs at least 2 single-object images, got {len(records)}.")
    words = {"colour": [c.value for c in Colour], "shape": [s.value for s in Shape]}
    objects = [record["scene"]["objects"][0] for _, record in records]
    prompts = {"colour": ["a picture of a"] * len(records),
               "shape": [f"a picture of a {obj['colour']}" for obj in objects]}
    images = [Image.open(path).convert("RGB") for path, _ in records]
    given = {"right": images, "shuffled": images[1:] + images[:1]}
    model.eval()
    results: dict[str, dict[str, float]] = {}
    for name in READ_ATTRIBUTES:
        target = torch.tensor([words[name].index(obj[name]) for obj in objects])
        results[name] = {"chance": 1 / len(words[name])}
        for condition, shown in given.items():
            rows = [(prompt, word, image) for prompt, image in zip(prompts[name], shown) for word in words[name]]
            scores = torch.cat([_continuation_logprobs(model, rows[start: start + batch_size])
                                for start in range(0, len(rows), batch_size)])
            choice = scores.view(len(records), len(words[name])).argmax(1)  # (n,): the word it ranks first
            results[name][condition] = float((choice == target).float().mean())
    return results


def _continuation_logprobs(model: Flamingo, rows: list[tuple[str, str, Image.Image]]) -> torch.Tensor:
    """``(len(rows),)`` log-probability of each row's `` word`` after ``<image>prompt`` (all its tokens)."""
    # A byte-level BPE splits at spaces, so " word" is the same tokens alone as at the end of the row.
    word_lengths = torch.tensor([len(model.processor.tokenizer(" " + word, add_special_tokens=False)["input_ids"])
                                 for _, word, _ in rows])
    inputs = model.processor([f"{model.config.media_token}{prompt} {word}" for prompt, word, _ in rows],
                             images=[[image] for _, _, image in rows], padding_side="right")
    ids, mask = inputs["input_ids"], inputs["attention_mask"]  # (R, T)
    logits = model(input_ids=ids, attention_mask=mask, pixel_values=inputs["pixel_values"],
                   frame_mask=inputs["frame_mask"]).logits.float()  # (R, T, V)
    token_logprobs = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]  # (R, T - 1)
    position = torch.arange(1, ids.shape[1])[None]  # the position each log-prob scores
    ends = mask.sum(1, keepdim=True)  # (R, 1): right padding, so the word is the row's last tokens
    in_word = (position >= ends - word_lengths[:, None]) & (position < ends)
    return (token_logprobs * in_word).sum(1)


def reading_summary(results: dict[str, dict[str, float]]) -> str:
    """One line for a model card: ``colour 90% (another image's 8%, chance 8%), shape ...``."""
    return ", ".join(f"{name} {100 * r['right']:.0f}% (with another image {100 * r['shuffled']:.0f}%, chance "
                     f"{100 * r['chance']:.0f}%)" for name, r in results.items())


def question_binding_plan(records: Sequence[dict[str, Any]], *, limit: int,
                          seed: int = 0) -> list[tuple[int, str, str]]:
    """``(image_id, colour, shape)``: per scene (first ``limit``), one object whose colour no other object in the
    scene has, chosen by ``seed``; scenes without one are left out. Records are tiny-world VQA ``records.jsonl``
    lines (one per question; a scene is taken once)."""
    rng = np.random.default_rng(seed)
    plan, seen = [], set()
    for record in records:
        if record["image_id"] in seen:
            continue
        seen.add(record["image_id"])
        objects = record["scene"]["objects"]
        colours = [obj["colour"] for obj in objects]
        lone = [obj for obj in objects if colours.count(obj["colour"]) == 1]
        if lone:
            obj = lone[int(rng.integers(len(lone)))]
            plan.append((int(record["image_id"]), str(obj["colour"]), str(obj["shape"])))
        if len(plan) == limit:
            break
    return plan


QUESTION_BINDING_FORMS = {
    "caption": "a picture of a {colour}",  # the colour word just before the shape word, as in training captions
    "question": "Question: what shape is the {colour} object? Answer:",  # the evaluation's VQA format
}


@torch.no_grad()
def question_binding(model: Flamingo, vqa_folder: str | Path, *, limit: int = 200,
                     batch_size: int = 96) -> dict[str, float]:
    """How often ``model`` names the shape of the object a colour picks out in a multi-object scene, said two ways.

    ``vqa_folder``: a tiny-world VQA split (``records.jsonl`` and ``images/``). For each planned object
    (:func:`question_binding_plan`), the shape word ranked first of the 8 after ``<image>a picture of a <colour>``
    (``caption``: how the model's captions say it) and after ``<image>Question: what shape is the <colour>
    object? Answer:`` (``question``), and the caption form with another scene's image (``shuffled``). A model that
    binds colour to shape in its captions but not when asked reads ``caption`` well above ``question``.
    """
    folder = Path(vqa_folder)
    path = folder / "records.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} is missing: question_binding reads a tiny-world VQA split (data/eval/vqa/<split>).")
    plan = question_binding_plan([json.loads(line) for line in path.read_text().splitlines()], limit=limit)
    if len(plan) < 2:
        raise ValueError(f"question_binding needs at least 2 scenes with an object of a colour of its own, got "
                         f"{len(plan)} in {folder}.")
    shapes = [s.value for s in Shape]
    images = [Image.open(folder / "images" / f"{image_id}.png").convert("RGB") for image_id, _, _ in plan]
    target = torch.tensor([shapes.index(shape) for _, _, shape in plan])
    model.eval()
    conditions = {"caption": ("caption", images), "question": ("question", images),
                  "shuffled": ("caption", images[1:] + images[:1])}
    results: dict[str, float] = {"chance": 1 / len(shapes)}
    for name, (form, shown) in conditions.items():
        rows = [(QUESTION_BINDING_FORMS[form].format(colour=colour), word, image)
                for (_, colour, _), image in zip(plan, shown) for word in shapes]
        scores = torch.cat([_continuation_logprobs(model, rows[start: start + batch_size])
                            for start in range(0, len(rows), batch_size)])
        choice = scores.view(len(plan), len(shapes)).argmax(1)  # (n,): the shape word it ranks first
        results[name] = float((choice == target).float().mean())
    results["scenes"] = len(plan)
    return results


EXISTENCE_CHECK_FORM = "Question: is there {shape}? Answer:"  # the evaluation's VQA format


def existence_check_plan(images: int, seed: int = 0) -> tuple[list[Scene], list[Shape]]:
    """``images`` fresh one-object scenes (deterministic by ``seed``) and the shape asked about in each: the
    object's own half the time, otherwise any other shape with equal chance."""
    rng = np.random.default_rng(seed)
    shapes = list(Shape)
    scenes, asked = [], []
    for _ in range(images):
        scene = sample_scene(rng, min_objects=1, max_objects=1)
        own = shapes.index(scene.objects[0].shape)
        other = (own + 1 + int(rng.integers(len(shapes) - 1))) % len(shapes)  # any shape but its own
        scenes.append(scene)
        asked.append(shapes[own] if rng.random() < 0.5 else shapes[other])
    return scenes, asked


@torch.no_grad()
def existence_check(model: Flamingo, *, images: int = 1600, test_fraction: float = 0.25, seed: int = 0,
                    batch_size: int = 64) -> dict[str, Any]:
    """Whether the model compares the shape a question asks about with the shape in the image.

    Renders ``images`` fresh one-object scenes (deterministic by ``seed``) and asks of each
    ``<image>Question: is there a <shape>? Answer:``, the shape being the object's own half the time and another
    one otherwise. Linear probes (:func:`_linear_probe`, trained on ``1 - test_fraction`` of the prompts and scored
    on the rest) read from the model's state at the last token, after each decoder layer, the ``asked`` shape, the
    ``seen`` shape and whether they ``match``. Returns ``layers`` (one dict of those three accuracies per layer,
    bottom to top), ``answer`` (how often the model itself ranks the right one of " yes" and " no" first, on all
    prompts), ``says_yes`` (how often it ranks " yes" first) and the chance levels. ``asked`` and ``seen`` high with
    ``match`` near 0.5 mean both halves of the check reach the answer and nothing compares them.
    """
    if images < 20 or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"existence_check needs images >= 20 and 0 < test_fraction < 1, got {images} and "
                         f"{test_fraction}.")
    shapes = list(Shape)
    scenes, asked_shapes = existence_check_plan(images, seed)
    pictures = [render_scene(scene) for scene in scenes]
    asked = [shapes.index(shape) for shape in asked_shapes]
    seen = [shapes.index(scene.objects[0].shape) for scene in scenes]
    prompts = [model.config.media_token + EXISTENCE_CHECK_FORM.format(shape=_a(shape.value)) for shape in asked_shapes]
    layers = model.decoder_layers()
    states: list[list[torch.Tensor]] = [[] for _ in layers]  # per layer: (batch, H) states at the last token
    current: dict[int, torch.Tensor] = {}

    def keep(index: int) -> Any:
        def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            current[index] = (output[0] if isinstance(output, tuple) else output).detach()
        return hook

    tokenizer = model.processor.tokenizer
    # The answer's first token decides which of the two the model ranks first (one token each in the tiny world).
    yes, no = (tokenizer(" " + word, add_special_tokens=False)["input_ids"][0] for word in ("yes", "no"))
    if yes == no:
        raise ValueError("existence_check needs ' yes' and ' no' to start with different tokens.")
    says_yes = []
    model.eval()
    handles = [layer.register_forward_hook(keep(index)) for index, layer in enumerate(layers)]
    try:
        for start in range(0, images, batch_size):
            inputs = model.processor(prompts[start: start + batch_size],
                                     images=[[p] for p in pictures[start: start + batch_size]], padding_side="left")
            logits = model(**inputs).logits[:, -1].float()  # (b, V): left padding puts every prompt's end last
            says_yes.append(logits[:, yes] > logits[:, no])
            for index in range(len(layers)):
                states[index].append(current[index][:, -1].float())
    finally:
        for handle in handles:
            handle.remove()
    targets = {"asked": (torch.tensor(asked), len(shapes)), "seen": (torch.tensor(seen), len(shapes)),
               "match": ((torch.tensor(asked) == torch.tensor(seen)).long(), 2)}
    split = int(images * (1 - test_fraction))
    per_layer = []
    for layer_states in states:
        x = torch.cat(layer_states)
        per_layer.append({name: float((_linear_probe(x[:split], y[:split], x[split:], classes) == y[split:])
                                      .float().mean()) for name, (y, classes) in targets.items()})
    said_yes = torch.cat(says_yes)
    return {"layers": per_layer, "answer": float((said_yes == targets["match"][0].bool()).float().mean()),
            "says_yes": float(said_yes.float().mean()), "chance": {"asked": 1 / len(shapes), "seen": 1 / len(shapes),
                                                                  "match": 0.5}, "images": images}


def existence_check_summary(results: dict[str, Any]) -> str:
    """One line for a model card: ``after the top layer the asked shape 100%, the seen shape 84%, whether they
    match 59% (chance 12%, 12%, 50%); its own answer right 47% (yes 23%); 1600 images``."""
    top, chance = results["layers"][-1], results["chance"]
    return (f"after the top layer the asked shape {top['asked']:.0%}, the seen shape {top['seen']:.0%}, whether they "
            f"match {top['match']:.0%} (chance {chance['asked']:.0%}, {chance['seen']:.0%}, {chance['match']:.0%}); "
            f"its own answer right {results['answer']:.0%} (yes {results['says_yes']:.0%}); {results['images']} images")


def question_binding_summary(results: dict[str, float]) -> str:
    """One line for a model card: ``caption form 73%, question form 31% (caption form with another image 14%,
    chance 12%; 200 scenes)``."""
    return (f"caption form {100 * results['caption']:.0f}%, question form {100 * results['question']:.0f}% (caption "
            f"form with another image {100 * results['shuffled']:.0f}%, chance {100 * results['chance']:.0f}%; "
            f"{int(results['scenes'])} scenes)")


IMAGE_CONDITIONS = ("right", "shuffled", "blank")


@torch.no_grad()
def image_reliance(model: Flamingo, captions: str | Path, *, limit: int = 256,
                   batch_size: int = 32) -> dict[str, float]:
    """Caption loss (nats per caption token) of ``model`` on held-out captions, by the images it is given.

    ``captions``: a captioning annotation file (COCO/Karpathy/JSONL, as the evaluation harness reads them); the
    first caption of each of the first ``limit`` images is scored as one ``<image>caption<|endofchunk|>`` row.
    Conditions: ``right`` (each caption's own image), ``shuffled`` (the batch's images rotated by one, so each
    caption sees another scene) and ``blank`` (a uniform gray image). A model that reads its images has a clearly
    lower ``right`` loss than the other two; equal losses mean the visual pathway is unused.
    """
    from flamingo_vlm.evaluation.datasets import load_captions

    examples = load_captions(captions)[:limit]
    if len(examples) < 2:
        raise ValueError(f"image_reliance needs at least 2 captioned images in {captions}, got {len(examples)}.")
    model.eval()
    totals = {condition: [0.0, 0] for condition in IMAGE_CONDITIONS}
    for start in range(0, len(examples), batch_size):
        batch = examples[start: start + batch_size]
        if len(batch) < 2:  # one image cannot be shuffled: pair the last image with the one before it (scored twice)
            batch = examples[start - 1: start + 1]
        images = [Image.open(example.image).convert("RGB") for example in batch]
        texts = [example.captions[0] for example in batch]
        given = {"right": images, "shuffled": images[1:] + images[:1],
                 "blank": [Image.new("RGB", image.size, (128, 128, 128)) for image in images]}
        for condition in IMAGE_CONDITIONS:
            nats, tokens = _caption_nats(model, given[condition], texts)
            totals[condition][0] += nats
            totals[condition][1] += tokens
    return {condition: nats / tokens for condition, (nats, tokens) in totals.items()}


def _caption_nats(model: Flamingo, images: list[Image.Image], texts: list[str]) -> tuple[float, int]:
    """Summed NLL of the caption tokens (after ``<image>``) and how many there are."""
    inputs = model.processor([f"{model.config.media_token}{text}{model.config.end_of_chunk_token}" for text in texts],
                             images=[[image] for image in images], padding_side="right")
    ids, mask = inputs["input_ids"], inputs["attention_mask"]  # (B, T)
    labels = ids.masked_fill(mask == 0, -100)
    after_media = torch.cumsum(ids == model.media_token_id, dim=1) > 0
    labels = labels.masked_fill(~after_media | (ids == model.media_token_id), -100)  # score the caption only
    logits = model(input_ids=ids, attention_mask=mask, pixel_values=inputs["pixel_values"],
                   frame_mask=inputs["frame_mask"]).logits  # (B, T, V)
    nats = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100,
                           reduction="sum")
    return float(nats), int((labels[:, 1:] != -100).sum())


def reliance_summary(losses: dict[str, float]) -> str:
    """One line for a model card: ``right images 2.163, shuffled across the batch 2.561, blank 2.636 nats/token``."""
    return (f"right images {losses['right']:.3f}, shuffled across the batch {losses['shuffled']:.3f}, "
            f"blank {losses['blank']:.3f} nats/token")


def copying_prompts(tokenizer: Any, *, runs: int = 64, words_per_run: int = 5, seed: int = 0,
                    end_of_chunk_token: str = "<|endofchunk|>") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Up to ``runs`` rows ``BOS run <|endofchunk|> run``, each run ``words_per_run`` made-up words from the pool
    reserved for evaluation (no training text contains them). Returns ids ``(rows, T)`` and two boolean masks
    ``(rows, T)`` marking the tokens scored in the first saying and in the repeat: every token of a run but its
    first (which nothing in the row predicts). Rows share one length: of ``8 * runs`` drawn runs, those of the
    most common token count are kept."""
    pool = sorted(reserved_eval_words())
    generator = torch.Generator().manual_seed(seed)
    end_of_chunk = tokenizer.convert_tokens_to_ids(end_of_chunk_token)
    by_length: dict[int, list[list[int]]] = {}
    for _ in range(8 * runs):
        picks = torch.randperm(len(pool), generator=generator)[:words_per_run].tolist()
        run = tokenizer(" ".join(pool[i] for i in picks), add_special_tokens=False)["input_ids"]
        by_length.setdefault(len(run), []).append(run)
    length, same_length = max(by_length.items(), key=lambda item: len(item[1]))
    rows = [[tokenizer.bos_token_id, *run, end_of_chunk, *run] for run in same_length[:runs]]
    ids = torch.tensor(rows)  # (runs, 2 * length + 2)
    position = torch.arange(ids.shape[1])
    first = ((position >= 2) & (position <= length)).expand_as(ids)  # tokens 2..length of the first saying
    repeated = (position >= length + 3).expand_as(ids)  # the same tokens said again
    return ids, first, repeated


@torch.no_grad()
def in_context_copying(model: Flamingo, *, runs: int = 64, words_per_run: int = 5,
                       seed: int = 0) -> dict[str, float]:
    """Loss (nats per token) of ``model`` on a run of never-seen made-up words, said once and then again
    (:func:`copying_prompts`). Text only: the frozen LM plus the gated dense layers of the GATED XATTN-DENSE
    blocks, which act on every token (as in the paper), so this is the copying a few-shot prompt gets, which can
    be less than the bare LM's. ``first`` is what the model knows of such words; ``repeated`` what copying from
    the context saves: with induction heads the repeat scores far below the first saying, without them about the
    same."""
    model.eval()
    ids, first, repeated = copying_prompts(model.processor.tokenizer, runs=runs, words_per_run=words_per_run,
                                           seed=seed, end_of_chunk_token=model.config.end_of_chunk_token)
    logits = model(input_ids=ids).logits.float()  # (runs, T, V)
    nats = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")  # (runs, T - 1)
    return {"first": float(nats[first[:, 1:]].mean()), "repeated": float(nats[repeated[:, 1:]].mean())}


def copying_summary(losses: dict[str, float]) -> str:
    """One line for a model card: ``first saying 7.41, repeated 2.90 nats/token``."""
    return f"first saying {losses['first']:.2f}, repeated {losses['repeated']:.2f} nats/token"


RECALL_FORMS = ("adjacent", "key_value", "described")


def recall_prompts(*, trials: int = 64, pairs: int = 4, seed: int = 0,
                   end_of_chunk_token: str = "<|endofchunk|>") -> dict[str, list[tuple[str, list[str], int]]]:
    """The text-only trials of :func:`in_context_recall`: per form, ``trials`` of ``(prompt, values, answer)``.

    ``adjacent``: ``pairs`` chunks ``key value`` of made-up words from the pool reserved for evaluation, then one of
    the keys again: plain induction ([A][B] ... [A] -> [B]); ``key_value``: the same with ``key: value`` and ``key:``,
    where every value follows the same token and the key must be matched one token back; ``described``: ``pairs``
    chunks ``a green star. this is a value.`` (one shape each, the corpus's own way of naming a thing), then one of
    the descriptions again (``... this is a``): the novel-word task with the image written out in words. ``values``
    are the candidates (with no leading space), ``answer`` the index of the right one. The same value never names
    two keys in a trial, so only recall by key answers it.
    """
    if trials < 1 or pairs < 2:
        raise ValueError(f"in_context_recall needs trials >= 1 and pairs >= 2, got trials={trials}, pairs={pairs}.")
    if pairs > len(Shape):
        raise ValueError(f"in_context_recall: {pairs} pairs but only {len(Shape)} shapes to describe.")
    pool = sorted(reserved_eval_words())
    shapes, colours = [str(s) for s in Shape], [str(c) for c in Colour]
    generator = torch.Generator().manual_seed(seed)

    def draw(n: int, items: Sequence[str]) -> list[str]:
        return [items[i] for i in torch.randperm(len(items), generator=generator)[:n].tolist()]

    forms: dict[str, list[tuple[str, list[str], int]]] = {form: [] for form in RECALL_FORMS}
    for _ in range(trials):
        words = draw(2 * pairs, pool)
        keys, values = words[:pairs], words[pairs:]
        asked = int(torch.randint(pairs, (1,), generator=generator))
        for form, separator in (("adjacent", ""), ("key_value", ":")):
            chunks = [f"{key}{separator} {value}{end_of_chunk_token}" for key, value in zip(keys, values, strict=True)]
            forms[form].append(("".join(chunks) + f"{keys[asked]}{separator}", values, asked))
        things = [f"{_a(colour + ' ' + shape)}." for colour, shape in
                  zip([draw(1, colours)[0] for _ in range(pairs)], draw(pairs, shapes), strict=True)]
        chunks = [f"{thing} this is a {value}.{end_of_chunk_token}"
                  for thing, value in zip(things, values, strict=True)]
        forms["described"].append(("".join(chunks) + f"{things[asked]} this is a", values, asked))
    return forms


@torch.no_grad()
def in_context_recall(model: Flamingo, *, trials: int = 64, pairs: int = 4, seed: int = 0) -> dict[str, float]:
    """Can the frozen LM recall a value by its key? Few-shot naming needs it: the novel-word task's words can only
    be picked by matching the query image against the examples' images, and the LM's heads must do that match on
    whatever the cross-attention writes. This asks the same in text, where nothing but the LM is involved
    (:func:`recall_prompts`; the frozen LM plus the gated dense layers, as :func:`in_context_copying`): the model's
    answer is the candidate value it gives the highest probability. Returns the accuracy per form and ``chance``
    (``1 / pairs``). Recall at chance while copying works (:func:`in_context_copying`) means the LM copies *a*
    word of its context but cannot pick it by what came before it. In a few-shot prompt (``<image>Output: word``)
    every word follows the same tokens, so only what the cross-attention writes there can tell the examples
    apart: the LM's heads must match on it as ``adjacent`` matches on the key token."""
    from flamingo_vlm.model.generation import score_candidates

    model.eval()

    def scores(prompt: str, candidates: list[str]) -> torch.Tensor:
        inputs = model.processor(prompt)
        return score_candidates(model, inputs["input_ids"], inputs["attention_mask"], None, None,
                                candidates=candidates)[0]  # (pairs,)

    return _recall_accuracy(scores, trials=trials, pairs=pairs, seed=seed,
                            end_of_chunk_token=model.config.end_of_chunk_token)


def _recall_accuracy(scores: Any, *, trials: int, pairs: int, seed: int, end_of_chunk_token: str) -> dict[str, float]:
    """Accuracy per form of :func:`recall_prompts`, the answer being the candidate ``scores(prompt, candidates)``
    ranks first (candidates with their leading space), and ``chance``."""
    results: dict[str, float] = {}
    forms = recall_prompts(trials=trials, pairs=pairs, seed=seed, end_of_chunk_token=end_of_chunk_token)
    for form, rows in forms.items():
        right = sum(int(scores(prompt, [" " + value for value in values]).argmax()) == answer
                    for prompt, values, answer in rows)
        results[form] = right / trials
    results["chance"] = 1 / pairs
    return results


@torch.no_grad()
def lm_candidate_scores(lm: torch.nn.Module, tokenizer: Any, prompt: str, candidates: Sequence[str]) -> torch.Tensor:
    """Summed log-probability of each candidate continuation of ``prompt`` under a bare causal LM: ``(C,)``.

    The prompt starts with the tokenizer's BOS token when it has one (as :class:`Flamingo`'s processor does), and
    candidates are tokenized as given, so include any leading space the text needs: the same scores
    :func:`~flamingo_vlm.model.generation.score_candidates` gives a Flamingo whose gates are all shut."""
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    prompt_ids = bos + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    candidate_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in candidates]
    if not candidate_ids or any(len(ids) == 0 for ids in candidate_ids):
        raise ValueError("lm_candidate_scores needs non-empty candidate strings.")
    width = len(prompt_ids) + max(len(ids) for ids in candidate_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = torch.full((len(candidates), width), pad, dtype=torch.long)
    scored = torch.zeros(len(candidates), width, dtype=torch.bool)  # positions whose token is a candidate's
    for row, ids in enumerate(candidate_ids):
        rows[row, : len(prompt_ids) + len(ids)] = torch.tensor(prompt_ids + ids)
        scored[row, len(prompt_ids): len(prompt_ids) + len(ids)] = True
    device = next(lm.parameters()).device
    # Right padding only follows the scored tokens, so causal attention never lets it change a score.
    log_probs = lm(input_ids=rows.to(device)).logits.float().log_softmax(-1).cpu()  # (C, width, V)
    token_log_probs = log_probs[:, :-1].gather(-1, rows[:, 1:, None])[..., 0]  # (C, width - 1): token t+1 given <= t
    return (token_log_probs * scored[:, 1:]).sum(-1)


def lm_recall(lm: torch.nn.Module, tokenizer: Any, *, trials: int = 64, pairs: int = 4, seed: int = 0,
              end_of_chunk_token: str = "<|endofchunk|>") -> dict[str, float]:
    """:func:`in_context_recall` for a bare causal LM (a Hugging Face ``...ForCausalLM`` and its tokenizer), before
    any Flamingo layer is added: ask it of the LM you mean to freeze. The recall by key that few-shot naming needs
    appears suddenly in training (the tiny world's LM names a described shape 23% of the time after 1,300 steps,
    chance 25%, and 94% after 1,625), so an LM just short of it looks like one that can never do it. Same
    prompts and answer rule."""
    lm.eval()
    return _recall_accuracy(lambda prompt, candidates: lm_candidate_scores(lm, tokenizer, prompt, candidates),
                            trials=trials, pairs=pairs, seed=seed, end_of_chunk_token=end_of_chunk_token)


def recall_summary(results: dict[str, float], pairs: int) -> str:
    """One line for a model card: ``the value right after its key 52%, after `key:` 30%, a described shape's
    made-up name 21% (chance 25%), 4 pairs``."""
    return (f"the value right after its key {100 * results['adjacent']:.0f}%, after `key:` "
            f"{100 * results['key_value']:.0f}%, a described shape's made-up name {100 * results['described']:.0f}% "
            f"(chance {100 * results['chance']:.0f}%), {pairs} pairs")


SCENE_QA_KINDS = ("colour", "shape", "count", "exists")
_SCENE_QA_ANSWERS: dict[str, tuple[str, ...]] = {
    "colour": tuple(str(c) for c in Colour),
    "shape": tuple(str(s) for s in Shape),
    "count": tuple(str(n) for n in range(5)),  # scenes hold 1-4 objects; "0" for a kind that is absent
    "exists": ("yes", "no"),
}


def scene_qa_prompts(*, trials: int = 60, examples: int = 2, seed: int = 0, split: str = "train",
                     end_of_chunk_token: str = "<|endofchunk|>") -> dict[str, list[tuple[str, list[str], int]]]:
    """The text-only trials of :func:`lm_scene_qa`: per kind of :data:`SCENE_QA_KINDS`, ``trials`` of ``(prompt,
    answers, answer)``.

    Each prompt is ``examples`` chunks ``scene: <caption>. Question: <q> Answer: <a>`` (scenes described in words,
    as the corpus's ``scene_qa`` documents describe them, each caption naming every object; one question kind per
    prompt), then a fresh scene and question with ``Answer:`` left open: the zero-shot VQA prompt with the image
    written out. ``answers`` are the candidates (no leading space), every answer that kind can have; ``answer`` the
    index of the right one. ``split`` picks the question wordings of the query (``"train"`` or ``"heldout"``);
    the examples always use training wordings. The evaluation's ``Question: ... Answer:`` labels are kept, though
    no training text has them, because the VQA prompts have them.
    """
    if trials < 1 or examples < 0:
        raise ValueError(f"scene_qa_prompts needs trials >= 1 and examples >= 0, got {trials} and {examples}.")
    rng = np.random.default_rng(seed)

    def described(kind: str, wording: str) -> tuple[str, str, str]:
        while True:
            # One size for every object, as in the corpus: captions name sizes only now and then, so a question
            # that told two same-coloured objects apart by size could not be answered from the words.
            scene = sample_scene(rng, sizes=[choice(rng, list(Size))])
            qa = question(scene, rng, kind=kind, split=wording)
            if qa is not None and qa.answer in _SCENE_QA_ANSWERS[kind]:
                text = caption(scene, rng, split="train").text.rstrip(".")
                return f"scene: {text}.", qa.question, qa.answer

    forms: dict[str, list[tuple[str, list[str], int]]] = {kind: [] for kind in SCENE_QA_KINDS}
    open_answer = fill_qa(EVAL_QA_FORMAT, "{question}", "").rstrip()  # "Question: {question} Answer:"
    for kind in SCENE_QA_KINDS:
        answers = list(_SCENE_QA_ANSWERS[kind])
        for _ in range(trials):
            chunks = [f"{scene} {fill_qa(EVAL_QA_FORMAT, asked, answer)}"
                      for scene, asked, answer in (described(kind, "train") for _ in range(examples))]
            scene, asked, answer = described(kind, split)
            chunks.append(f"{scene} {open_answer.format(question=asked)}")
            forms[kind].append((end_of_chunk_token.join(chunks), answers, answers.index(answer)))
    return forms


@torch.no_grad()
def lm_scene_qa(lm: torch.nn.Module, tokenizer: Any, *, trials: int = 60, examples: int = 2, seed: int = 0,
                split: str = "train", end_of_chunk_token: str = "<|endofchunk|>") -> dict[str, dict[str, float]]:
    """Can a bare causal LM answer a question about a scene told in words? VQA asks the same with the scene shown,
    and Flamingo's LM is frozen: whatever it cannot work out from words (which object a question names, whether
    one is there), the cross-attention alone must work out from pixels. Asks :func:`scene_qa_prompts`; the answer
    is the candidate the LM gives the highest probability. Per kind: ``accuracy``, ``majority`` (the share of its
    commonest right answer, what one fixed guess gets), ``said_most`` (the share of the answer the LM gave
    most: near 1 means it says one thing whatever it is told) and ``questions`` (``trials``). The tiny world's LM
    answers "is there a ...?" no better than always giving the commoner answer would, which is where its
    Flamingo's yes/no answers stand too."""
    lm.eval()
    results: dict[str, dict[str, float]] = {}
    forms = scene_qa_prompts(trials=trials, examples=examples, seed=seed, split=split,
                             end_of_chunk_token=end_of_chunk_token)
    for kind, rows in forms.items():
        said = [int(lm_candidate_scores(lm, tokenizer, prompt, [" " + a for a in answers]).argmax())
                for prompt, answers, _ in rows]
        truth = [answer for _, _, answer in rows]
        results[kind] = {
            "accuracy": sum(s == t for s, t in zip(said, truth, strict=True)) / len(rows),
            "majority": Counter(truth).most_common(1)[0][1] / len(rows),
            "said_most": Counter(said).most_common(1)[0][1] / len(rows),
            "questions": len(rows),
        }
    return results


def scene_qa_summary(results: dict[str, dict[str, float]]) -> str:
    """One line for a model card: ``colour 37% (one fixed answer 13%), ..., exists 58% (one fixed answer 60%; says
    one answer 98% of the time), 60 questions per kind``."""
    parts = []
    for kind, r in results.items():
        told = f"; says one answer {100 * r['said_most']:.0f}% of the time" if r["said_most"] >= 0.7 else ""
        parts.append(f"{kind} {100 * r['accuracy']:.0f}% (one fixed answer {100 * r['majority']:.0f}%{told})")
    counts = sorted({int(r["questions"]) for r in results.values()})
    return ", ".join(parts) + f", {'/'.join(map(str, counts))} questions per kind"


def copy_binding_plan(labels: Sequence[str], *, shots: int, trials: int,
                      seed: int = 0) -> list[tuple[list[int], int]]:
    """The trials of :func:`copy_binding`: per trial ``shots`` distinct example indices into ``labels`` and the
    index of the example whose image is asked again (one of them)."""
    if shots < 1 or trials < 1:
        raise ValueError(f"copy_binding needs shots >= 1 and trials >= 1, got shots={shots}, trials={trials}.")
    if shots > len(labels):
        raise ValueError(f"copy_binding: {shots} shots but only {len(labels)} labelled images to draw from.")
    if len(set(labels)) < 2:
        raise ValueError("copy_binding needs images of at least two words (one word leaves nothing to choose).")
    generator = torch.Generator().manual_seed(seed)
    plan = []
    for _ in range(trials):
        examples = torch.randperm(len(labels), generator=generator)[:shots].tolist()
        asked = examples[int(torch.randint(shots, (1,), generator=generator))]
        plan.append((examples, asked))
    return plan


@torch.no_grad()
def copy_binding(model: Flamingo, annotations: str | Path, class_names: str | Path | Sequence[str], *,
                 shots: int = 8, trials: int = 96, seed: int = 0) -> dict[str, float]:
    """Does ``model`` bind a made-up word to an image it has just been shown? The easiest form of the novel-word
    task, and the one every harder form needs.

    ``annotations`` and ``class_names``: a classification JSONL and its class names, as the evaluation harness
    reads them (the tiny world's ``novel_words/support/novel_words.jsonl`` and ``novel_words_classes.json``).
    Each trial shows ``shots`` of its images as ``<image>Output: word<|endofchunk|>`` and then an exact copy of one
    of those images with ``<image>Output:``; the model's answer is the class name whose `` word`` it gives the
    highest probability. Returns ``copy`` (how often that is the word the copied image was shown with) and
    ``shown`` (how often picking uniformly among the distinct words the prompt shows would be: what copying some
    word of the prompt gets without looking at the images). ``copy`` near ``shown`` means the images play no part
    in which word is copied: the cross-attention's information does not reach the frozen LM's copying.
    """
    from flamingo_vlm.evaluation.datasets import load_classification
    from flamingo_vlm.model.generation import score_candidates

    examples, words = load_classification(annotations, class_names)
    labels = [words[example.label] for example in examples]
    plan = copy_binding_plan(labels, shots=shots, trials=trials, seed=seed)
    media, end_of_chunk = model.config.media_token, model.config.end_of_chunk_token
    images: dict[int, Image.Image] = {}  # each file decoded once, however many trials show it

    def image(i: int) -> Image.Image:
        if i not in images:
            images[i] = Image.open(examples[i].image).convert("RGB")
        return images[i]

    model.eval()
    right, shown = 0, 0.0
    for shown_examples, asked in plan:
        prompt = "".join(f"{media}Output: {labels[i]}{end_of_chunk}" for i in shown_examples) + f"{media}Output:"
        inputs = model.processor(prompt, images=[image(i) for i in [*shown_examples, asked]])
        scores = score_candidates(model, inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"],
                                  inputs["frame_mask"], candidates=[" " + word for word in words])  # (1, K)
        right += words[int(scores[0].argmax())] == labels[asked]
        shown += 1 / len({labels[i] for i in shown_examples})
    return {"copy": right / trials, "shown": shown / trials}


def binding_summary(results: dict[str, float], shots: int) -> str:
    """One line for a model card: ``the copied image's word 24% (picking uniformly among the prompt's words:
    25%), 8 examples``."""
    return (f"the copied image's word {100 * results['copy']:.0f}% (picking uniformly among the prompt's words: "
            f"{100 * results['shown']:.0f}%), {shots} examples")
