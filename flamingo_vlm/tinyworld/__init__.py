"""Tiny world: procedurally generated scenes, clips and text, for training a small Flamingo with no downloads.

* :mod:`.scene` - data model (shapes, colours, sizes, backgrounds, objects, scenes) and :func:`sample_scene`;
* :mod:`.geometry` - shape outlines, masks, spatial relations and 3x3 grid positions;
* :mod:`.render` - :func:`render_scene` (anti-aliased RGB images);
* :mod:`.video` - clips where objects move, change colour, appear or disappear;
* :mod:`.templates` - the registry of wordings, with held-out flags;
* :mod:`.language` - captions and questions with short, checkable answers;
* :mod:`.words` - made-up words for novel-word binding tasks.

Everything random takes a :class:`numpy.random.Generator`: the same seed gives the same scenes, pixels and
texts.
"""

from .geometry import (
    CLEAR_SEPARATION,
    POSITION_NAMES,
    Relation,
    clear_relations,
    object_extent,
    object_mask,
    position_cell,
    position_is_clear,
    position_name,
    relation_truth,
    visible_fractions,
)
from .language import (
    NUMBER_WORDS,
    QA,
    Caption,
    background_phrases,
    caption,
    clip_caption,
    clip_question,
    format_qa,
    object_phrase,
    question,
    unique_refs,
    unique_track_refs,
    vocabulary,
)
from .render import render_background, render_scene
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
    colour_distance,
    sample_background,
    sample_scene,
)
from .templates import (
    CAPTION_KINDS,
    CLIP_CAPTION_KINDS,
    CLIP_QUESTION_KINDS,
    FORMAT_KINDS,
    QUESTION_KINDS,
    TEMPLATES,
    Template,
    template,
    templates,
)
from .video import Clip, Event, EventKind, render_clip, sample_clip
from .words import is_novel, novel_word, novel_words, sample_novel_words

__all__ = [
    "CAPTION_KINDS",
    "CLEAR_SEPARATION",
    "CLIP_CAPTION_KINDS",
    "CLIP_QUESTION_KINDS",
    "FORMAT_KINDS",
    "NUMBER_WORDS",
    "POSITION_NAMES",
    "QA",
    "QUESTION_KINDS",
    "TEMPLATES",
    "Background",
    "BackgroundKind",
    "Caption",
    "Clip",
    "Colour",
    "Direction",
    "Event",
    "EventKind",
    "ObjectSpec",
    "Relation",
    "Scene",
    "SceneObject",
    "Shape",
    "Size",
    "Template",
    "background_clashes",
    "background_phrases",
    "caption",
    "clear_relations",
    "clip_caption",
    "clip_question",
    "colour_distance",
    "format_qa",
    "is_novel",
    "novel_word",
    "novel_words",
    "object_extent",
    "object_mask",
    "object_phrase",
    "position_cell",
    "position_is_clear",
    "position_name",
    "question",
    "relation_truth",
    "render_background",
    "render_clip",
    "render_scene",
    "sample_background",
    "sample_clip",
    "sample_novel_words",
    "sample_scene",
    "template",
    "templates",
    "unique_refs",
    "unique_track_refs",
    "visible_fractions",
    "vocabulary",
]

# Data builders: training shards, LM corpus, evaluation sets, and the one-call build.
from .build import DEFAULT_COUNTS, build_tiny_world, tiny_world_data_command  # noqa: E402
from .corpus import iter_tokenizer_text, read_lm_corpus, write_lm_corpus  # noqa: E402
from .datasets import (  # noqa: E402
    EVAL_CAPTION_FORMAT,
    EVAL_QA_FORMAT,
    TRAIN_QA_FORMATS,
    build_training_sets,
    reserved_eval_words,
)
from .evalsets import build_eval_sets, recompute_answer  # noqa: E402

__all__ += [
    "DEFAULT_COUNTS",
    "EVAL_CAPTION_FORMAT",
    "EVAL_QA_FORMAT",
    "TRAIN_QA_FORMATS",
    "build_eval_sets",
    "build_tiny_world",
    "build_training_sets",
    "iter_tokenizer_text",
    "read_lm_corpus",
    "recompute_answer",
    "reserved_eval_words",
    "tiny_world_data_command",
    "write_lm_corpus",
]
