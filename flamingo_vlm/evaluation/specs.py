"""Task specifications: one dataclass per task with its data paths, prompt templates and decoding options.

Defaults follow the Flamingo paper (Sec. 2.5, App. A.2) and OpenFlamingo where the paper is silent:
captioning ``<image>Output: {caption}``, VQA ``<image>Question: {question} Answer: {answer}``, beam search
with 3 beams, at most 20 new tokens for captions and 5 for answers; close-ended tasks rank the ``answer``
template filled with each class name by mean per-token log-likelihood.

Specs are built in Python (``VQATask(questions=..., annotations=..., images=...)``), from a suite YAML
entry or from command-line flags, both through :func:`task_from_dict`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeAlias

from flamingo_vlm.evaluation.datasets import COCO_IMAGE_PATTERN
from flamingo_vlm.evaluation.prompts import PromptTemplate

__all__ = [
    "TASK_TYPES",
    "CaptioningTask",
    "ClassificationTask",
    "RetrievalTask",
    "TaskSpec",
    "VQATask",
    "VideoQATask",
    "check_spec",
    "hateful_memes_task",
    "metric_label",
    "spec_class",
    "task_from_dict",
    "task_settings",
]

PathLike: TypeAlias = str | os.PathLike


@dataclass(kw_only=True)
class CaptioningTask:
    """Image captioning (COCO, Flickr30k); metric CIDEr (also BLEU-4, ROUGE-L).

    ``annotations``: COCO captions JSON, Karpathy split JSON or JSONL (see ``datasets.load_captions``);
    ``split`` picks a Karpathy split (e.g. ``"test"``). Demonstrations come from ``support_annotations``
    (default: the evaluated file) with ``support_split`` (default: ``split``).
    ``caption_tokenizer``: ``"ptb"`` (Java, as COCO papers), ``"python"`` or ``"auto"`` (ptb when Java exists).
    """

    type: ClassVar[str] = "captioning"
    prompt_fields: ClassVar[tuple[str, ...]] = ()
    answer_fields: ClassVar[tuple[str, ...]] = ("caption",)

    annotations: PathLike
    images: PathLike | None = None
    split: str | None = None
    image_pattern: str | None = None
    support_annotations: PathLike | None = None
    support_images: PathLike | None = None
    support_split: str | None = None
    name: str = "captioning"
    prompt_template: str = "<image>Output:"
    answer_template: str = " {caption}"
    max_new_tokens: int = 20
    num_beams: int = 3
    caption_tokenizer: Literal["auto", "ptb", "python"] = "auto"

    @property
    def metric(self) -> str:
        return "CIDEr"


@dataclass(kw_only=True)
class VQATask:
    """Open-ended VQA (VQAv2, OK-VQA, VizWiz, TextVQA in the VQAv2 layout); metric VQA accuracy (%).

    Images are ``images / image_pattern`` (default the COCO convention ``COCO_{split}_{image_id:012d}.jpg``,
    ``{split}`` from the questions' ``data_subtype`` or ``image_split``). ``vqa_protocol`` selects the answer
    normalisation (``"openflamingo"`` or ``"official"``, see ``metrics.vqa_accuracy``).
    """

    type: ClassVar[str] = "vqa"
    prompt_fields: ClassVar[tuple[str, ...]] = ("question",)
    answer_fields: ClassVar[tuple[str, ...]] = ("answer",)

    questions: PathLike
    annotations: PathLike
    images: PathLike
    image_pattern: str = COCO_IMAGE_PATTERN
    image_split: str | None = None
    support_questions: PathLike | None = None
    support_annotations: PathLike | None = None
    support_images: PathLike | None = None
    support_image_split: str | None = None
    name: str = "vqa"
    prompt_template: str = "<image>Question: {question} Answer:"
    answer_template: str = " {answer}"
    max_new_tokens: int = 5
    num_beams: int = 3
    vqa_protocol: Literal["openflamingo", "official"] = "openflamingo"

    @property
    def metric(self) -> str:
        return "VQA accuracy"


@dataclass(kw_only=True)
class ClassificationTask:
    """Close-ended classification by log-likelihood ranking of each class name.

    ``format="jsonl"``: ImageNet-style JSONL + ``class_names``, metric top-1 accuracy (%) (top-5 also
    reported). ``format="hateful_memes"``: HatefulMemes JSONL; with ``metric="roc_auc"`` the score of an
    example is ``loglik(class 1) - loglik(class 0)`` (monotone in the softmax over the two classes, so the
    AUC is the same as OpenFlamingo's). ``ensembles`` > 1 averages log-likelihoods over that many orderings of
    the same demonstrations (the paper's prompt ensembling). ``reduction`` ``"mean"`` ranks per-token mean
    log-likelihood (OpenFlamingo), ``"sum"`` the total.
    """

    type: ClassVar[str] = "classification"
    prompt_fields: ClassVar[tuple[str, ...]] = ("text",)
    answer_fields: ClassVar[tuple[str, ...]] = ("class_name",)

    annotations: PathLike
    class_names: PathLike | Sequence[str] | None = None
    images: PathLike | None = None
    format: Literal["jsonl", "hateful_memes"] = "jsonl"
    support_annotations: PathLike | None = None
    support_images: PathLike | None = None
    name: str = "classification"
    prompt_template: str = "<image>Output:"
    answer_template: str = " {class_name}"
    metric: Literal["top1", "roc_auc"] = "top1"
    reduction: Literal["mean", "sum"] = "mean"
    ensembles: int = 1


@dataclass(kw_only=True)
class VideoQATask:
    """Open-ended video QA (MSVD-QA, MSRVTT-QA, iVQA style); metric top-1 accuracy (%) of the normalised answer.

    A video is a folder of frames or a list of frame files (see ``datasets.load_video_qa``); ``max_frames``
    samples that many frames uniformly (default: the model's ``max_frames_at_inference`` when a video is longer).
    """

    type: ClassVar[str] = "video_qa"
    prompt_fields: ClassVar[tuple[str, ...]] = ("question",)
    answer_fields: ClassVar[tuple[str, ...]] = ("answer",)

    annotations: PathLike
    videos: PathLike | None = None
    support_annotations: PathLike | None = None
    support_videos: PathLike | None = None
    max_frames: int | None = None
    name: str = "video_qa"
    prompt_template: str = "<image>Question: {question} Answer:"
    answer_template: str = " {answer}"
    max_new_tokens: int = 5
    num_beams: int = 3

    @property
    def metric(self) -> str:
        return "top-1 accuracy"


@dataclass(kw_only=True)
class RetrievalTask:
    """Image-to-text and text-to-image retrieval by log-likelihood of each caption given each image.

    One (images x captions) log-likelihood matrix is scored; it ranks captions per image (i2t) and images
    per caption (t2i). Score: mean of the six Recall@1/5/10 (%), each also reported. The candidate pool is
    the captions of the evaluated images (after ``limit``). Data formats as captioning.
    """

    type: ClassVar[str] = "retrieval"
    prompt_fields: ClassVar[tuple[str, ...]] = ()
    answer_fields: ClassVar[tuple[str, ...]] = ("caption",)

    annotations: PathLike
    images: PathLike | None = None
    split: str | None = None
    image_pattern: str | None = None
    support_annotations: PathLike | None = None
    support_images: PathLike | None = None
    support_split: str | None = None
    name: str = "retrieval"
    prompt_template: str = "<image>Output:"
    answer_template: str = " {caption}"
    reduction: Literal["mean", "sum"] = "mean"
    ensembles: int = 1

    @property
    def metric(self) -> str:
        return "mean recall"


TaskSpec: TypeAlias = CaptioningTask | VQATask | ClassificationTask | VideoQATask | RetrievalTask

HATEFUL_MEMES_PROMPT = "<image>is an image with: '{text}' written on it. Is it hateful? Answer:"


def hateful_memes_task(annotations: PathLike, images: PathLike | None = None, **overrides: Any) -> ClassificationTask:
    """HatefulMemes (ROC-AUC) as a :class:`ClassificationTask` with OpenFlamingo's prompt and classes
    ``["no", "yes"]`` (label 1 = hateful = "yes")."""
    values: dict[str, Any] = dict(
        annotations=annotations, images=images, format="hateful_memes", class_names=["no", "yes"],
        name="hateful_memes", prompt_template=HATEFUL_MEMES_PROMPT, metric="roc_auc",
    )
    values.update(overrides)
    return ClassificationTask(**values)


#: Task type names (``--task``, the ``task:`` key of suite entries) -> builder.
TASK_TYPES: dict[str, Any] = {
    "captioning": CaptioningTask,
    "vqa": VQATask,
    "classification": ClassificationTask,
    "hateful_memes": hateful_memes_task,
    "video_qa": VideoQATask,
    "retrieval": RetrievalTask,
}

_PATH_FIELDS = frozenset({
    "annotations", "questions", "images", "videos", "class_names", "support_annotations", "support_questions",
    "support_images", "support_videos",
})


def spec_class(task_type: str) -> type:
    """The dataclass behind a task type name (``hateful_memes`` is a :class:`ClassificationTask`)."""
    return ClassificationTask if task_type == "hateful_memes" else TASK_TYPES[task_type]


def task_from_dict(entry: Mapping[str, Any], base_dir: PathLike = ".", source: str = "task") -> TaskSpec:
    """Build a spec from ``{"task": TYPE, field: value, ...}`` (a suite entry or parsed flags).

    Relative data paths are resolved against ``base_dir`` (the suite file's folder). ``None`` values are
    dropped, so unset flags keep the defaults. Errors name ``source`` and the offending key.
    """
    if not isinstance(entry, Mapping):
        raise ValueError(f"{source}: a task entry must be a mapping, got {type(entry).__name__}")
    task_type = entry.get("task")
    if task_type not in TASK_TYPES:
        raise ValueError(f"{source}: field 'task' must be one of {sorted(TASK_TYPES)}, got {task_type!r}")
    cls = spec_class(task_type)
    valid = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "task" or value is None:
            continue
        if key not in valid:
            raise ValueError(f"{source}: unknown field {key!r} for task {task_type!r}; valid fields: {sorted(valid)}")
        if key in _PATH_FIELDS and isinstance(value, (str, os.PathLike)):
            path = Path(value).expanduser()
            value = path if path.is_absolute() else Path(base_dir) / path
        values[key] = value
    builder = TASK_TYPES[task_type]
    try:
        spec = builder(**values)
    except TypeError as error:  # a required field is missing
        required = sorted(f.name for f in dataclasses.fields(cls)
                          if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        raise ValueError(f"{source}: task {task_type!r} needs fields {required} ({error})") from None
    check_spec(spec)
    return spec


def check_spec(spec: TaskSpec) -> None:
    """Raise ``ValueError`` for inconsistent options (bad templates, beams, metric/format mismatches)."""
    template = PromptTemplate(spec.prompt_template, spec.answer_template)
    template.check(spec.prompt_fields, spec.answer_fields, spec.name)
    if getattr(spec, "max_new_tokens", 1) < 1 or getattr(spec, "num_beams", 1) < 1:
        raise ValueError(f"{spec.name}: max_new_tokens and num_beams must be >= 1")
    if getattr(spec, "ensembles", 1) < 1:
        raise ValueError(f"{spec.name}: ensembles must be >= 1")
    if isinstance(spec, ClassificationTask):
        if spec.format not in ("jsonl", "hateful_memes"):
            raise ValueError(f"{spec.name}: format must be 'jsonl' or 'hateful_memes', got {spec.format!r}")
        if spec.metric not in ("top1", "roc_auc"):
            raise ValueError(f"{spec.name}: metric must be 'top1' or 'roc_auc', got {spec.metric!r}")
        if spec.class_names is None:
            raise ValueError(f"{spec.name}: classification needs class_names (a file or a list)")
    if getattr(spec, "reduction", "mean") not in ("mean", "sum"):
        raise ValueError(f"{spec.name}: reduction must be 'mean' or 'sum'")
    if isinstance(spec, VQATask) and spec.vqa_protocol not in ("openflamingo", "official"):
        raise ValueError(f"{spec.name}: vqa_protocol must be 'openflamingo' or 'official', got {spec.vqa_protocol!r}")
    if isinstance(spec, CaptioningTask):
        if spec.caption_tokenizer not in ("auto", "ptb", "python"):
            raise ValueError(f"{spec.name}: caption_tokenizer must be 'auto', 'ptb' or 'python', "
                             f"got {spec.caption_tokenizer!r}")
        if spec.caption_tokenizer == "ptb" and shutil.which("java") is None:
            # Checked here because the metric runs only after all generation is done.
            raise ValueError(f"{spec.name}: caption_tokenizer 'ptb' needs Java ('java' not found on PATH); "
                             f"use 'auto' or 'python'")


def metric_label(spec: TaskSpec) -> str:
    """The name of the task's headline metric as results and reference scores spell it."""
    if isinstance(spec, ClassificationTask):
        return "ROC-AUC" if spec.metric == "roc_auc" else "top-1 accuracy"
    return spec.metric


def task_settings(spec: TaskSpec) -> dict[str, Any]:
    """The spec as JSON-ready settings (paths as strings), plus its type."""
    settings: dict[str, Any] = {"type": spec.type}
    for item in dataclasses.fields(spec):
        value = getattr(spec, item.name)
        if isinstance(value, os.PathLike):
            value = str(value)
        elif isinstance(value, (list, tuple)):
            value = [str(v) for v in value]
        settings[item.name] = value
    return settings

