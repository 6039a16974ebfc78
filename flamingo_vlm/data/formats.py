"""Decoding one raw WebDataset sample into a structured pairs / interleaved / video / text sample.

A raw sample is what ``webdataset.tariterators.group_by_keys`` yields: ``__key__``, ``__url__`` and one entry per
file of the sample, the file name minus ``{key}.`` -> bytes (lower-cased by WebDataset). The layouts:

pairs (LAION/ALIGN-style)
    ``{key}.jpg|jpeg|png|webp`` + ``{key}.txt`` (utf-8 caption), or ``{key}.json`` with ``caption`` (or ``text``).
    When both exist the ``.txt`` wins, as in img2dataset shards where the JSON holds metadata.
interleaved (MMC4 layout)
    ``{key}.json`` with ``text_list: list[str]`` and ``image_info: list[{"image_name", "matched_text_index"}]``.
    Convention: each image is a file of the same sample named ``{key}.{image_name}``, so its entry in the raw dict
    is ``image_name`` itself (``{key}.img0.jpg`` -> ``raw["img0.jpg"]``). Image names must therefore be lower case
    and contain no ``/``; ``write_shards`` renames images to ``img0.jpg``, ``img1.png``, ... . As a fallback an
    ``image_info`` entry may carry the image inline as ``image_base64`` (OpenFlamingo's MMC4 shards do this).
video
    ``{key}.frame000.jpg``, ``{key}.frame001.jpg``, ... (ordered by the number, any width) + ``{key}.txt`` or
    ``{key}.json`` as for pairs.
text
    ``{key}.txt``, or ``{key}.json`` with ``text`` (or ``caption``): a document with no image (not in the paper;
    see ``DatasetConfig.kind``).

Every problem raises :class:`CorruptSample` with a short stable ``reason`` slug (see ``REASONS``) so a training
run can count skipped samples per cause. Nothing is ever unpickled: only images, UTF-8 text and JSON are read.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from PIL import Image

from flamingo_vlm.processing.images import ImageProcessor

__all__ = [
    "IMAGE_EXTENSIONS",
    "KINDS",
    "REASONS",
    "CorruptSample",
    "InterleavedSample",
    "Kind",
    "PairSample",
    "Sample",
    "TextSample",
    "VideoSample",
    "decode_image",
    "decode_sample",
]

Kind = Literal["pairs", "interleaved", "video", "text"]
KINDS: tuple[str, ...] = ("pairs", "interleaved", "video", "text")

IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")

REASONS: dict[str, str] = {
    "bad_image": "image bytes that PIL cannot decode (truncated, corrupt, not an image)",
    "bad_json": "JSON that does not parse or lacks/mistypes a required field",
    "bad_text": "a .txt caption that is not UTF-8",
    "missing_text": "no .txt and no caption (or text) in the .json",
    "empty_text": "caption or document with no non-blank text",
    "missing_image": "no image file in the sample (pairs), or an image_name absent from it (interleaved)",
    "no_images": "an interleaved document without any image",
    "too_many_images": "an interleaved document with more images than max_images",
    "no_frames": "a video sample without frameNNN.* files",
    "bad_frames": "two frame files with the same number",
}

# What PIL raises for unreadable, truncated, corrupt or oversized images (as in processing/images.py).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
_FRAME_NAME = re.compile(r"^frame(\d+)\.(?:" + "|".join(IMAGE_EXTENSIONS) + r")$")
# One ImageProcessor only for its RGB conversion (EXIF orientation, transparency onto the CLIP mean colour).
_DEFAULT_IMAGE_PROCESSOR = ImageProcessor()


class CorruptSample(Exception):
    """A sample that cannot become a training example; ``reason`` is a stable slug for counting."""

    def __init__(self, reason: str, detail: str, key: str | None = None) -> None:
        # args carries every field so the exception pickles across DataLoader worker processes.
        super().__init__(reason, detail, key)
        self.reason = reason
        self.detail = detail
        self.key = key

    def __str__(self) -> str:
        where = f"sample {self.key!r}: " if self.key is not None else ""
        return f"{where}{self.reason}: {self.detail}"


@dataclass
class PairSample:
    """One image and its caption."""

    key: str
    image: Image.Image
    text: str


@dataclass
class InterleavedSample:
    """A document: its sentences, and its images as (matched sentence index, image) sorted by that index.

    Each image goes just before its matched sentence, as in OpenFlamingo's MMC4 processing.
    """

    key: str
    texts: list[str]
    images: list[tuple[int, Image.Image]]


@dataclass
class VideoSample:
    """A video's frames in time order and its caption."""

    key: str
    frames: list[Image.Image]
    text: str


@dataclass
class TextSample:
    """A document of text alone."""

    key: str
    text: str


Sample: TypeAlias = PairSample | InterleavedSample | VideoSample | TextSample


def decode_sample(kind: Kind | str, raw: Mapping[str, Any], *, max_images: int | None,
                  image_processor: ImageProcessor | None = None) -> Sample:
    """Decode a raw WebDataset sample of the given kind.

    Args:
        kind: ``"pairs"``, ``"interleaved"``, ``"video"`` or ``"text"``.
        raw: the sample dict (``__key__`` and extension -> bytes).
        max_images: interleaved documents with more images than this are rejected (``None``: no limit); the
            paper and OpenFlamingo train on at most 5-6 images per sequence.
        image_processor: whose RGB conversion to use (transparency is filled with its mean colour); defaults to
            CLIP statistics.

    Raises:
        CorruptSample: for any undecodable or incomplete sample.
        ValueError: for an unknown ``kind`` (a configuration error, not a data error).
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown sample kind {kind!r}; expected one of {KINDS}.")
    key = str(raw.get("__key__", "?"))
    processor = image_processor or _DEFAULT_IMAGE_PROCESSOR
    try:
        if kind == "pairs":
            return _decode_pair(key, raw, processor)
        if kind == "video":
            return _decode_video(key, raw, processor)
        if kind == "text":
            return TextSample(key=key, text=_caption(raw, what="document"))
        return _decode_interleaved(key, raw, processor, max_images)
    except CorruptSample as error:
        if error.key is None:
            error.key = key
            error.args = (error.reason, error.detail, key)
        raise


def decode_image(data: bytes, name: str, image_processor: ImageProcessor | None = None) -> Image.Image:
    """Decode image bytes into an RGB PIL image (EXIF-upright, transparency filled), or raise ``bad_image``."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise CorruptSample("bad_image", f"{name}: empty or non-bytes image data")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            # Image.open is lazy: truncation and most corruption only surface on load().
            opened.load()
            return (image_processor or _DEFAULT_IMAGE_PROCESSOR).load_image(opened)
    except _DECODE_ERRORS as error:
        raise CorruptSample("bad_image", f"{name}: {type(error).__name__}: {error}") from error


# ---------------------------------------------------------------------- per kind


def _decode_pair(key: str, raw: Mapping[str, Any], processor: ImageProcessor) -> PairSample:
    image = None
    for ext in IMAGE_EXTENSIONS:
        if ext in raw:
            image = decode_image(raw[ext], f".{ext}", processor)
            break
    if image is None:
        raise CorruptSample("missing_image", f"no .{'/.'.join(IMAGE_EXTENSIONS)} file in the sample "
                                             f"(files: {_files(raw)})")
    return PairSample(key=key, image=image, text=_caption(raw))


def _decode_video(key: str, raw: Mapping[str, Any], processor: ImageProcessor) -> VideoSample:
    numbered: dict[int, str] = {}
    for name in raw:
        match = _FRAME_NAME.match(name)
        if match is None:
            continue
        number = int(match.group(1))
        if number in numbered:
            raise CorruptSample("bad_frames", f"frames {numbered[number]!r} and {name!r} have the same number")
        numbered[number] = name
    if not numbered:
        raise CorruptSample("no_frames", f"no frameNNN.<{'|'.join(IMAGE_EXTENSIONS)}> files (files: {_files(raw)})")
    frames = [decode_image(raw[numbered[n]], numbered[n], processor) for n in sorted(numbered)]
    return VideoSample(key=key, frames=frames, text=_caption(raw))


def _decode_interleaved(key: str, raw: Mapping[str, Any], processor: ImageProcessor,
                        max_images: int | None) -> InterleavedSample:
    if "json" not in raw:
        raise CorruptSample("bad_json", f"no .json document in the sample (files: {_files(raw)})")
    document = _json_object(raw["json"])
    texts = document.get("text_list")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise CorruptSample("bad_json", "text_list must be a list of strings")
    infos = document.get("image_info")
    if not isinstance(infos, list) or not all(isinstance(info, Mapping) for info in infos):
        raise CorruptSample("bad_json", "image_info must be a list of objects")
    if not any(t.strip() for t in texts):
        raise CorruptSample("empty_text", "every sentence of text_list is blank")
    if not infos:
        raise CorruptSample("no_images", "image_info is empty")
    if max_images is not None and len(infos) > max_images:
        # Checked before decoding so oversized documents cost no image decoding.
        raise CorruptSample("too_many_images", f"{len(infos)} images, more than max_images={max_images}")

    images: list[tuple[int, Image.Image]] = []
    for position, info in enumerate(infos):
        index = info.get("matched_text_index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(texts):
            raise CorruptSample("bad_json", f"image_info[{position}].matched_text_index={index!r} is not a "
                                            f"sentence index in [0, {len(texts)})")
        name = info.get("image_name")
        if not isinstance(name, str) or not name:
            raise CorruptSample("bad_json", f"image_info[{position}].image_name must be a non-empty string")
        images.append((index, decode_image(_image_bytes(raw, info, name), name, processor)))
    images.sort(key=lambda item: item[0])  # stable: images of one sentence keep their listed order
    return InterleavedSample(key=key, texts=list(texts), images=images)


# ---------------------------------------------------------------------- helpers


def _image_bytes(raw: Mapping[str, Any], info: Mapping[str, Any], name: str) -> bytes:
    # WebDataset lower-cases extensions, so a name written with capitals is found under its lower-case form.
    for candidate in (name, name.lower()):
        if candidate in raw and not candidate.startswith("__"):
            return raw[candidate]
    inline = info.get("image_base64")
    if isinstance(inline, str):
        try:
            return base64.b64decode(inline, validate=True)
        except (binascii.Error, ValueError) as error:
            raise CorruptSample("bad_image", f"{name}: image_base64 is not valid base64: {error}") from error
    raise CorruptSample("missing_image", f"image_name {name!r} is not a file of the sample (files: {_files(raw)})")


def _caption(raw: Mapping[str, Any], what: str = "caption") -> str:
    if "txt" in raw:
        try:
            text = _utf8(raw["txt"])
        except (UnicodeDecodeError, TypeError) as error:
            raise CorruptSample("bad_text", f".txt is not UTF-8 text: {error}") from error
    elif "json" in raw:
        metadata = _json_object(raw["json"])
        field = next((name for name in ("caption", "text") if name in metadata), None)
        if field is None:
            raise CorruptSample("missing_text", "no .txt, and the .json has no 'caption' or 'text' field")
        text = metadata[field]
        if not isinstance(text, str):
            raise CorruptSample("bad_json", f"the .json field {field!r} is a {type(text).__name__}, not a string")
    else:
        raise CorruptSample("missing_text", f"no .txt or .json {what} (files: {_files(raw)})")
    if not text.strip():
        raise CorruptSample("empty_text", f"the {what} is blank")
    return text.strip()


def _json_object(data: Any) -> dict[str, Any]:
    try:
        value = json.loads(_utf8(data))
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, RecursionError) as error:
        raise CorruptSample("bad_json", f".json does not parse: {error}") from error
    if not isinstance(value, dict):
        raise CorruptSample("bad_json", f".json holds a {type(value).__name__}, not an object")
    return value


def _utf8(data: Any) -> str:
    """Bytes from a shard, or a str from a hand-built sample dict."""
    return data if isinstance(data, str) else bytes(data).decode("utf-8")


def _files(raw: Mapping[str, Any]) -> list[str]:
    return sorted(name for name in raw if not name.startswith("__"))
