"""Benchmark data loaders: standard annotation files -> lists of typed examples.

Every loader checks what it reads and raises :class:`DataFormatError` (a ``ValueError``) naming the file, the
field and the entry index of the first problem, and checks that every image or frame file exists (naming the
missing path), so a long sweep never fails halfway through on bad data.

Formats (exact layouts in each loader's docstring):

* captions: COCO captions JSON (``images`` + ``annotations``), the Karpathy-split JSON (COCO or Flickr30k:
  ``images`` with ``sentences`` and ``split``), or JSONL of ``{"image", "captions"}``;
* VQA: VQAv2 questions JSON + annotations JSON (also OK-VQA, VizWiz, TextVQA converted to that format);
* classification: JSONL of ``{"image", "label"}`` plus a class-name list; HatefulMemes JSONL
  (``{"img", "text", "label"}``);
* video QA: JSON list of ``{"video" | "frames", "question", "answer" | "answers"}``.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

__all__ = [
    "COCO_IMAGE_PATTERN",
    "CaptionExample",
    "ClassificationExample",
    "DataFormatError",
    "Example",
    "MediaRef",
    "VQAExample",
    "VideoQAExample",
    "load_captions",
    "load_class_names",
    "load_classification",
    "load_hateful_memes",
    "load_video_qa",
    "load_vqa",
    "media_key",
]

#: COCO image file names: ``COCO_val2014_000000391895.jpg``. ``{split}`` comes from the questions file's
#: ``data_subtype`` (or ``image_split=``); ``{image_id}`` from each question.
COCO_IMAGE_PATTERN = "COCO_{split}_{image_id:012d}.jpg"

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

#: One media item as the processor takes it: an image file, or a video as its frame files in order.
MediaRef: TypeAlias = Path | tuple[Path, ...]


class DataFormatError(ValueError):
    """A benchmark file is malformed: the message names the file, the field and the entry."""


@dataclass(frozen=True)
class CaptionExample:
    """An image with its reference captions (captioning and retrieval)."""

    id: str
    image: Path
    captions: tuple[str, ...]

    @property
    def media(self) -> MediaRef:
        return self.image


@dataclass(frozen=True)
class VQAExample:
    """A question about an image with its human answers (VQAv2 has 10)."""

    id: str  # question_id
    image: Path
    question: str
    answers: tuple[str, ...]
    image_id: str = ""
    answer_type: str = ""  # VQAv2's "yes/no", "number" or "other"; "" when the annotations do not say
    question_type: str = ""  # VQAv2's question opening ("what color is the", "is there a"); "" when not given

    @property
    def media(self) -> MediaRef:
        return self.image

    @property
    def demo_answer(self) -> str:
        """The answer shown when this example is a demonstration: the most frequent human answer (ties: the
        first given), i.e. VQAv2's ``multiple_choice_answer``."""
        counts = Counter(self.answers)
        return max(self.answers, key=lambda answer: counts[answer])


@dataclass(frozen=True)
class ClassificationExample:
    """An image with a class index; ``text`` is the meme text for HatefulMemes-style data."""

    id: str
    image: Path
    label: int
    text: str | None = None

    @property
    def media(self) -> MediaRef:
        return self.image


@dataclass(frozen=True)
class VideoQAExample:
    """A question about a video (its frames in order) with the accepted answers."""

    id: str
    frames: tuple[Path, ...]
    question: str
    answers: tuple[str, ...]
    question_type: str = ""  # e.g. "move", "colour"; "" when the annotations do not say

    @property
    def media(self) -> MediaRef:
        return self.frames

    @property
    def demo_answer(self) -> str:
        return self.answers[0]


Example: TypeAlias = CaptionExample | VQAExample | ClassificationExample | VideoQAExample


# --------------------------------------------------------------------------------------------------
# Small readers shared by the loaders
# --------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}: not valid JSON ({error})") from error
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{path}: not UTF-8 text ({error})") from error


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line."""
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(f"{path}:{number}: not valid JSON ({error})") from error
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append((number, record))
    if not records:
        raise DataFormatError(f"{path}: holds no examples")
    return records


def _field(entry: Any, key: str | Sequence[str], path: Path, where: str, kind: type | tuple[type, ...]) -> Any:
    """``entry[key]`` (the first present of several alternative keys), checked to be of ``kind``."""
    keys = [key] if isinstance(key, str) else list(key)
    if not isinstance(entry, dict):
        raise DataFormatError(f"{path}: {where} must be a JSON object, got {type(entry).__name__}")
    for name in keys:
        if name in entry:
            value = entry[name]
            # bool is an int subclass; a label or id of true/false is a mistake, not a number.
            if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
                expected = " or ".join(t.__name__ for t in _as_tuple(kind))
                raise DataFormatError(f"{path}: field '{name}' of {where} must be {expected}, "
                                      f"got {type(value).__name__}")
            return value
    raise DataFormatError(f"{path}: {where} has no field '{keys[0]}'"
                          + (f" (nor {', '.join(repr(k) for k in keys[1:])})" if len(keys) > 1 else ""))


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _list_field(container: Any, key: str, path: Path) -> list:
    if isinstance(container, dict):
        if key not in container:
            raise DataFormatError(f"{path}: missing top-level field '{key}'")
        value = container[key]
    else:
        value = container
    if not isinstance(value, list):
        raise DataFormatError(f"{path}: field '{key}' must be a list, got {type(value).__name__}")
    return value


def _existing_file(path: Path, source: Path, where: str) -> Path:
    if not path.is_file():
        raise DataFormatError(f"{source}: {where}: image file not found: {path}")
    return path


def _resolve(root: Path, name: str) -> Path:
    candidate = Path(name).expanduser()
    return candidate if candidate.is_absolute() else root / candidate


def _format_image_name(pattern: str, image_id: Any, split: str | None, source: Path, where: str) -> str:
    """Fill an image file-name pattern such as ``COCO_{split}_{image_id:012d}.jpg`` or ``{image_id}.png``."""
    fields = {name for _, name, _, _ in string.Formatter().parse(pattern) if name}
    unknown = fields - {"image_id", "split"}
    if unknown:
        raise DataFormatError(f"image pattern {pattern!r} uses unknown field(s) {sorted(unknown)}; "
                              f"it may use {{image_id}} and {{split}}")
    if "split" in fields and not split:
        raise DataFormatError(f"{source}: image pattern {pattern!r} needs {{split}}, but the file has no "
                              f"'data_subtype' field; pass the image split (e.g. val2014) explicitly")
    try:
        return pattern.format(image_id=image_id, split=split)
    except (ValueError, TypeError):
        # A numeric format such as :012d with an id stored as a string of digits.
        if isinstance(image_id, str) and image_id.isdigit():
            return pattern.format(image_id=int(image_id), split=split)
        raise DataFormatError(f"{source}: {where}: image_id {image_id!r} does not fit the image pattern "
                              f"{pattern!r} (pass a pattern such as '{{image_id}}.jpg')") from None


def _natural_key(path: Path) -> list[tuple[int, str]]:
    # (number, "") for digit runs and (-1, text) otherwise: frame2 before frame10, no int/str comparisons.
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", path.name)]


def _string_list(value: Any, path: Path, where: str, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise DataFormatError(f"{path}: field '{field}' of {where} must be a string or a non-empty list of strings")
    return tuple(value)


# --------------------------------------------------------------------------------------------------
# Captions (captioning and retrieval)
# --------------------------------------------------------------------------------------------------


def load_captions(
    annotations: str | os.PathLike,
    images: str | os.PathLike | None = None,
    *,
    split: str | None = None,
    image_pattern: str | None = None,
) -> list[CaptionExample]:
    """Images with reference captions, from any of three layouts (detected from the content).

    * COCO captions (``captions_val2014.json``)::

        {"images": [{"id": 391895, "file_name": "COCO_val2014_000000391895.jpg"}, ...],
         "annotations": [{"image_id": 391895, "caption": "A man riding a bike."}, ...]}

      An image entry without ``file_name`` is named by ``image_pattern`` (default :data:`COCO_IMAGE_PATTERN`,
      with ``{split}`` from ``split``). Images without any caption are skipped.
    * Karpathy split (``dataset_coco.json``, ``dataset_flickr30k.json``)::

        {"images": [{"filename": "1000092795.jpg", "filepath": "val2014" (optional), "split": "test",
                     "cocoid": 391895 (optional), "imgid": 0,
                     "sentences": [{"raw": "Two young guys ..."}, ...]}, ...]}

      ``split`` keeps only images of that split (``"train"`` also keeps ``"restval"``, as everyone trains
      on both); ``None`` keeps all. The file path is ``images/filepath/filename``.
    * JSONL (file name ending in ``.jsonl``), one image per line::

        {"image": "relative/or/absolute.jpg", "captions": ["...", "..."], "id": "optional"}

    Args:
        annotations: the annotation file.
        images: the folder image names are relative to (default: the annotation file's folder).

    Raises:
        DataFormatError: malformed file, missing field (named with the entry index), missing image file.
    """
    path = Path(annotations).expanduser()
    root = Path(images).expanduser() if images is not None else path.parent
    if path.suffix == ".jsonl":
        return _load_caption_jsonl(path, root)
    data = _read_json(path)
    if isinstance(data, dict) and "annotations" in data:
        return _load_coco_captions(data, path, root, split, image_pattern or COCO_IMAGE_PATTERN)
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        return _load_karpathy(data, path, root, split)
    raise DataFormatError(f"{path}: not a captions file: expected a COCO captions JSON (fields 'images' and "
                          f"'annotations') or a Karpathy split JSON (field 'images' with 'sentences')")


def _load_coco_captions(data: dict, path: Path, root: Path, split: str | None, pattern: str) -> list[CaptionExample]:
    images = _list_field(data, "images", path)
    annotations = _list_field(data, "annotations", path)
    files: dict[Any, Path] = {}
    order: list[Any] = []
    for index, entry in enumerate(images):
        where = f"images[{index}]"
        image_id = _field(entry, "id", path, where, (int, str))
        if "file_name" in entry:
            name = _field(entry, "file_name", path, where, str)
        else:
            name = _format_image_name(pattern, image_id, split, path, where)
        files[image_id] = root / name
        order.append(image_id)
    captions: dict[Any, list[str]] = {}
    for index, entry in enumerate(annotations):
        where = f"annotations[{index}]"
        image_id = _field(entry, "image_id", path, where, (int, str))
        caption = _field(entry, "caption", path, where, str)
        if image_id not in files:
            raise DataFormatError(f"{path}: field 'image_id' of {where} is {image_id!r}, which no entry of "
                                  f"'images' has")
        captions.setdefault(image_id, []).append(caption.strip())
    examples = []
    for image_id in order:
        if image_id in captions:
            file = _existing_file(files[image_id], path, f"image {image_id!r}")
            examples.append(CaptionExample(str(image_id), file, tuple(captions[image_id])))
    if not examples:
        raise DataFormatError(f"{path}: no image has a caption")
    return examples


def _load_karpathy(data: dict, path: Path, root: Path, split: str | None) -> list[CaptionExample]:
    wanted = None if split is None else ({"train", "restval"} if split == "train" else {split})
    examples = []
    for index, entry in enumerate(data["images"]):
        where = f"images[{index}]"
        entry_split = _field(entry, "split", path, where, str)
        if wanted is not None and entry_split not in wanted:
            continue
        filename = _field(entry, "filename", path, where, str)
        folder = _field(entry, "filepath", path, where, str) if "filepath" in entry else ""
        sentences = _field(entry, "sentences", path, where, list)
        if not sentences:
            raise DataFormatError(f"{path}: field 'sentences' of {where} is empty")
        captions = tuple(
            _field(sentence, "raw", path, f"{where}.sentences[{number}]", str).strip()
            for number, sentence in enumerate(sentences)
        )
        image_id = entry.get("cocoid", entry.get("imgid", Path(filename).stem))
        file = _existing_file(root / folder / filename, path, where)
        examples.append(CaptionExample(str(image_id), file, captions))
    if not examples:
        splits = sorted({str(e.get("split")) for e in data["images"] if isinstance(e, dict)})
        raise DataFormatError(f"{path}: no image in split {split!r} (field 'split' has values {splits})")
    return examples


def _load_caption_jsonl(path: Path, root: Path) -> list[CaptionExample]:
    examples = []
    for number, record in _read_jsonl(path):
        where = f"line {number}"
        image = _field(record, "image", path, where, str)
        key = "captions" if "captions" in record else "caption"
        captions = _string_list(_field(record, ("captions", "caption"), path, where, (str, list)), path, where, key)
        file = _existing_file(_resolve(root, image), path, where)
        examples.append(CaptionExample(str(record.get("id", number)), file, tuple(c.strip() for c in captions)))
    return examples


# --------------------------------------------------------------------------------------------------
# VQA (VQAv2, OK-VQA, VizWiz, TextVQA)
# --------------------------------------------------------------------------------------------------


def load_vqa(
    questions: str | os.PathLike,
    annotations: str | os.PathLike,
    images: str | os.PathLike,
    *,
    image_pattern: str = COCO_IMAGE_PATTERN,
    image_split: str | None = None,
) -> list[VQAExample]:
    """Questions with their human answers, in the VQAv2 layout.

    Questions file (``v2_OpenEnded_mscoco_val2014_questions.json``)::

        {"data_subtype": "val2014",
         "questions": [{"image_id": 262148, "question": "Where is he looking?", "question_id": 262148000}, ...]}

    Annotations file (``v2_mscoco_val2014_annotations.json``)::

        {"annotations": [{"question_id": 262148000, "image_id": 262148, "answer_type": "other",
                          "question_type": "where is the",
                          "answers": [{"answer": "down", "answer_id": 1}, ... 10 answers ...]}, ...]}

    ``answers`` may also be a list of plain strings; ``answer_type`` and ``question_type`` are optional (when
    every question has one, the evaluator reports accuracy per answer type and per question type, as the official
    VQAv2 evaluation does). Every question needs an annotation. The image of a
    question is ``images / image_pattern.format(image_id=..., split=...)``, where ``split`` is ``image_split``
    or else the questions file's ``data_subtype``: the COCO convention by default, ``{image_id}.jpg`` for
    TextVQA/VizWiz files whose ``image_id`` is the file stem, ``{image_id}`` when it is the whole file name.

    Raises:
        DataFormatError: malformed files, missing fields (file, field, entry index), a question without
            annotation, a missing image file.
    """
    questions_path = Path(questions).expanduser()
    annotations_path = Path(annotations).expanduser()
    root = Path(images).expanduser()
    question_data = _read_json(questions_path)
    annotation_data = _read_json(annotations_path)
    question_list = _list_field(question_data, "questions", questions_path)
    annotation_list = _list_field(annotation_data, "annotations", annotations_path)
    split = image_split
    if split is None and isinstance(question_data, dict):
        subtype = question_data.get("data_subtype")
        split = subtype if isinstance(subtype, str) else None

    answers_by_question: dict[str, tuple[str, ...]] = {}
    answer_types: dict[str, str] = {}
    question_types: dict[str, str] = {}
    for index, entry in enumerate(annotation_list):
        where = f"annotations[{index}]"
        question_id = _field(entry, "question_id", annotations_path, where, (int, str))
        raw_answers = _field(entry, "answers", annotations_path, where, list)
        if not raw_answers:
            raise DataFormatError(f"{annotations_path}: field 'answers' of {where} is empty")
        answers = []
        for number, answer in enumerate(raw_answers):
            if isinstance(answer, dict):
                answer = _field(answer, "answer", annotations_path, f"{where}.answers[{number}]", str)
            elif not isinstance(answer, str):
                raise DataFormatError(f"{annotations_path}: {where}.answers[{number}] must be an object with "
                                      f"'answer' or a string")
            answers.append(answer)
        answers_by_question[str(question_id)] = tuple(answers)
        answer_type = entry.get("answer_type", "")  # optional: VQAv2 has it, TextVQA and VizWiz files may not
        if not isinstance(answer_type, str):
            raise DataFormatError(f"{annotations_path}: field 'answer_type' of {where} must be a string such as "
                                  f"\"yes/no\", \"number\" or \"other\", got {answer_type!r}")
        answer_types[str(question_id)] = answer_type
        question_type = entry.get("question_type", "")  # optional too: VQAv2's 65 question openings
        if not isinstance(question_type, str):
            raise DataFormatError(f"{annotations_path}: field 'question_type' of {where} must be a string such as "
                                  f"\"what color is the\", got {question_type!r}")
        question_types[str(question_id)] = question_type

    examples = []
    for index, entry in enumerate(question_list):
        where = f"questions[{index}]"
        question_id = str(_field(entry, "question_id", questions_path, where, (int, str)))
        image_id = _field(entry, "image_id", questions_path, where, (int, str))
        question = _field(entry, "question", questions_path, where, str)
        if question_id not in answers_by_question:
            raise DataFormatError(f"{annotations_path}: no entry of 'annotations' has question_id {question_id} "
                                  f"(asked by {questions_path} {where})")
        name = _format_image_name(image_pattern, image_id, split, questions_path, where)
        file = _existing_file(root / name, questions_path, where)
        examples.append(VQAExample(question_id, file, question.strip(), answers_by_question[question_id],
                                   str(image_id), answer_types[question_id], question_types[question_id]))
    if not examples:
        raise DataFormatError(f"{questions_path}: field 'questions' is empty")
    return examples


# --------------------------------------------------------------------------------------------------
# Classification (ImageNet-style, HatefulMemes)
# --------------------------------------------------------------------------------------------------


def load_class_names(class_names: str | os.PathLike | Sequence[str]) -> list[str]:
    """Class names in label order: a list, a JSON file holding a list of strings, or a text file with one
    name per line (blank lines ignored).

    Raises:
        DataFormatError: a missing/empty file, duplicate names, or non-string entries.
    """
    if isinstance(class_names, (str, os.PathLike)):
        path = Path(class_names).expanduser()
        if not path.is_file():
            raise DataFormatError(f"{path}: class-name file not found")
        if path.suffix == ".json":
            data = _read_json(path)
            if not isinstance(data, list) or not all(isinstance(name, str) for name in data):
                raise DataFormatError(f"{path}: a class-name JSON file must hold a list of strings")
            names = [name.strip() for name in data]
        else:
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        source = str(path)
    else:
        names = [str(name).strip() for name in class_names]
        source = "class_names"
    if not names or any(not name for name in names):
        raise DataFormatError(f"{source}: class names must be non-empty strings, and at least one is needed")
    duplicates = [name for name, count in Counter(names).items() if count > 1]
    if duplicates:
        raise DataFormatError(f"{source}: duplicate class name(s) {duplicates[:5]}")
    return names


def load_classification(
    annotations: str | os.PathLike,
    class_names: str | os.PathLike | Sequence[str],
    images: str | os.PathLike | None = None,
) -> tuple[list[ClassificationExample], list[str]]:
    """Labelled images from JSONL, one per line, with a class-name list (label ``i`` = ``class_names[i]``)::

        {"image": "n01440764/ILSVRC2012_val_00000293.JPEG", "label": 0, "id": "optional"}

    ``label`` is a class index or a class name; ``img`` is accepted for ``image``. Image names are relative
    to ``images`` (default: the JSONL file's folder).

    Returns:
        (examples, class names).

    Raises:
        DataFormatError: malformed lines, missing fields (file and line), labels out of range or unknown,
            missing image files.
    """
    path = Path(annotations).expanduser()
    root = Path(images).expanduser() if images is not None else path.parent
    names = load_class_names(class_names)
    index_of = {name: i for i, name in enumerate(names)}
    examples = []
    for number, record in _read_jsonl(path):
        where = f"line {number}"
        image = _field(record, ("image", "img"), path, where, str)
        label = _field(record, "label", path, where, (int, str))
        if isinstance(label, str):
            if label not in index_of:
                raise DataFormatError(f"{path}: field 'label' of {where} is {label!r}, not one of the class names")
            label = index_of[label]
        if not 0 <= label < len(names):
            raise DataFormatError(f"{path}: field 'label' of {where} is {label}, outside [0, {len(names)})")
        text = record.get("text")
        if text is not None and not isinstance(text, str):
            raise DataFormatError(f"{path}: field 'text' of {where} must be a string")
        file = _existing_file(_resolve(root, image), path, where)
        examples.append(ClassificationExample(str(record.get("id", number)), file, label, text))
    return examples, names


def load_hateful_memes(
    annotations: str | os.PathLike, images: str | os.PathLike | None = None
) -> list[ClassificationExample]:
    """HatefulMemes JSONL (``dev_seen.jsonl``), one meme per line::

        {"id": 42953, "img": "img/42953.png", "label": 0, "text": "its their character not their color ..."}

    ``label`` must be 0 (not hateful) or 1 (hateful); ``image`` is accepted for ``img``. Image names are
    relative to ``images`` (default: the JSONL file's folder, where the dataset keeps its ``img/`` folder).

    Raises:
        DataFormatError: malformed lines, missing fields (file and line), labels other than 0/1, missing images.
    """
    path = Path(annotations).expanduser()
    root = Path(images).expanduser() if images is not None else path.parent
    examples = []
    for number, record in _read_jsonl(path):
        where = f"line {number}"
        image = _field(record, ("img", "image"), path, where, str)
        text = _field(record, "text", path, where, str)
        label = _field(record, "label", path, where, int)
        if label not in (0, 1):
            raise DataFormatError(f"{path}: field 'label' of {where} must be 0 or 1, got {label}")
        file = _existing_file(_resolve(root, image), path, where)
        examples.append(ClassificationExample(str(record.get("id", number)), file, label, text.strip()))
    return examples


# --------------------------------------------------------------------------------------------------
# Video QA
# --------------------------------------------------------------------------------------------------


def load_video_qa(annotations: str | os.PathLike, videos: str | os.PathLike | None = None) -> list[VideoQAExample]:
    """Video questions from a JSON list (or ``{"questions": [...]}``)::

        [{"id": "q1", "video": "frames/video7010", "question": "what is a man doing?", "answer": "dance"},
         {"id": "q2", "frames": ["v2/0001.jpg", "v2/0002.jpg"], "question": "...", "answers": ["cut", "slice"],
          "question_type": "what"}]

    ``video`` is a folder of frame images, read in natural name order (``f2`` before ``f10``); ``frames``
    (or ``video`` given as a list) is an explicit list of frame files. Paths are relative to ``videos``
    (default: the JSON file's folder). ``answers`` lists every accepted answer; ``id`` defaults to the index.
    ``question_type`` (optional, a string) groups the questions: the evaluation then also reports the accuracy
    of each type, as MSRVTT-QA and MSVD-QA results are reported per question word.

    Raises:
        DataFormatError: malformed JSON, missing fields (file, field, entry index), an empty or missing frames
            folder, a missing frame file.
    """
    path = Path(annotations).expanduser()
    root = Path(videos).expanduser() if videos is not None else path.parent
    data = _read_json(path)
    entries = _list_field(data, "questions", path)
    examples = []
    for index, entry in enumerate(entries):
        where = f"entry {index}"
        source = _field(entry, ("frames", "video"), path, where, (str, list))
        if isinstance(source, str):
            folder = _resolve(root, source)
            if not folder.is_dir():
                raise DataFormatError(f"{path}: {where}: frames folder not found: {folder}")
            frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                            key=_natural_key)
            if not frames:
                raise DataFormatError(f"{path}: {where}: frames folder {folder} holds no image files")
        else:
            if not source or not all(isinstance(name, str) for name in source):
                raise DataFormatError(f"{path}: field 'frames' of {where} must be a non-empty list of file names")
            frames = [_existing_file(_resolve(root, name), path, where) for name in source]
        question = _field(entry, "question", path, where, str)
        key = "answers" if "answers" in entry else "answer"
        answers = _string_list(_field(entry, ("answers", "answer"), path, where, (str, list)), path, where, key)
        question_type = entry.get("question_type", "")
        if not isinstance(question_type, str):
            raise DataFormatError(f"{path}: field 'question_type' of {where} must be a string (e.g. \"what\"), got "
                                  f"{type(question_type).__name__}")
        examples.append(VideoQAExample(str(entry.get("id", index)), tuple(frames), question.strip(), answers,
                                       question_type))
    if not examples:
        raise DataFormatError(f"{path}: holds no questions")
    return examples


def media_key(media: MediaRef) -> str:
    """A stable string naming a media item (its resolved file path or paths), for caches and exclusion."""
    if isinstance(media, tuple):
        return "|".join(str(p.resolve()) for p in media)
    return str(Path(media).resolve())

