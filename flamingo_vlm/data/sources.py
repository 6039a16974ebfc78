"""Small local datasets as raw WebDataset-style samples, so one decoder (``decode_sample``) reads both forms.

Accepted sources (relative paths inside a JSONL resolve against the JSONL's folder):

pairs
    a folder of ``name.jpg|jpeg|png|webp`` + ``name.txt`` (sorted by file name), or a JSONL of
    ``{"image": path, "text": caption}`` (``"caption"`` is accepted for ``"text"``).
interleaved
    a JSONL of ``{"text_list": [...], "image_info": [{"image_name": path, "matched_text_index": i}, ...]}``; other
    fields are kept.
video
    a JSONL of ``{"frames": [path, ...], "text": caption}`` or ``{"frames_dir": dir, "text": caption}`` (the image
    files of ``dir`` in natural name order: ``f2`` before ``f10``).
text
    a JSONL of ``{"text": document}``, or a plain text file (``.txt``): one document per non-blank line.

Each sample becomes the dict a shard would give: ``__key__`` (``00000000_name`` for folders, ``00000000`` for
JSONL lines: unique, and free of the dots WebDataset splits keys on), ``__source__`` (where it came from, for error
messages; not written to shards) and file extension -> bytes, in the layouts of ``formats.py``:

- pairs: ``jpg|jpeg|png|webp`` + ``txt``;
- interleaved: ``json`` (``image_name`` rewritten to ``img0.jpg``, ``img1.png``, ...; the original path kept as
  ``source_name``) + one entry per image under that name;
- video: ``frame000.jpg``, ``frame001.jpg``, ... + ``txt``;
- text: ``txt``.

Problems are not raised here: a missing file or a bad line yields a sample that ``decode_sample`` rejects with the
matching reason (``missing_image``, ``bad_json``, ...), so validation and counting happen in one place.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from flamingo_vlm.data.formats import IMAGE_EXTENSIONS, KINDS

__all__ = ["count_source", "iter_source"]

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
# Files PIL can usually read that the shard layout does not name; they are re-encoded as PNG (lossless).
_OTHER_IMAGE_SUFFIXES = (".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")


def iter_source(kind: str, source: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the raw samples of a local dataset (see the module docstring for the accepted forms).

    Raises:
        ValueError: if ``kind`` is unknown or ``source`` is not a form that kind accepts.
    """
    path = Path(source)
    if kind not in KINDS:
        raise ValueError(f"Unknown sample kind {kind!r}; expected one of {KINDS}.")
    if path.is_dir():
        if kind != "pairs":
            raise ValueError(f"A folder is a source only for pairs; give {kind} data as a JSONL file ({path}).")
        return _folder_pairs(path)
    if not path.is_file():
        raise ValueError(f"Data source not found: {path}")
    if kind == "text" and path.suffix.lower() == ".txt":
        return _text_lines(path)
    readers = {"pairs": _jsonl_pair, "interleaved": _jsonl_interleaved, "video": _jsonl_video, "text": _jsonl_text}
    return _jsonl(path, readers[kind])


def count_source(kind: str, source: str | os.PathLike) -> int:
    """How many samples ``iter_source`` will yield (cheap: no file is decoded); for progress bars."""
    path = Path(source)
    if path.is_dir():
        return len(_folder_images(path))
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


# ---------------------------------------------------------------------- pairs folder


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)


def _folder_pairs(folder: Path) -> Iterator[dict[str, Any]]:
    for index, image_path in enumerate(_folder_images(folder)):
        sample: dict[str, Any] = {"__key__": _key(index, image_path.stem), "__source__": str(image_path)}
        _add_image(sample, None, image_path)
        caption = image_path.with_suffix(".txt")
        if caption.is_file():
            sample["txt"] = caption.read_bytes()
        yield sample


# ---------------------------------------------------------------------- JSONL


def _jsonl(path: Path, reader: Any) -> Iterator[dict[str, Any]]:
    index = 0
    with open(path, "rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            sample: dict[str, Any] = {"__key__": _key(index), "__source__": f"{path}:{line_number}"}
            index += 1
            try:
                record = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if not isinstance(record, dict):
                sample["json"] = line  # decode_sample reports it as bad_json
                yield sample
                continue
            reader(sample, record, path.parent)
            yield sample


def _jsonl_pair(sample: dict[str, Any], record: dict[str, Any], root: Path) -> None:
    text = record.get("text", record.get("caption"))
    if isinstance(text, str):
        sample["txt"] = text.encode("utf-8")
    else:
        # No usable caption: keep the record so the decoder names the problem.
        sample["json"] = json.dumps({k: v for k, v in record.items() if k != "image"}).encode("utf-8")
    image = record.get("image")
    if isinstance(image, str):
        _add_image(sample, None, root / image)


def _jsonl_interleaved(sample: dict[str, Any], record: dict[str, Any], root: Path) -> None:
    document = dict(record)
    infos = record.get("image_info")
    if isinstance(infos, list):
        renamed = []
        for position, info in enumerate(infos):
            if not isinstance(info, dict) or not isinstance(info.get("image_name"), str):
                renamed.append(info)  # left for the decoder to reject as bad_json
                continue
            original = info["image_name"]
            name = _add_image(sample, f"img{position}", root / original)
            renamed.append({**info, "image_name": name, "source_name": original})
        document["image_info"] = renamed
    sample["json"] = json.dumps(document, ensure_ascii=False).encode("utf-8")


def _jsonl_text(sample: dict[str, Any], record: dict[str, Any], root: Path) -> None:
    text = record.get("text")
    if isinstance(text, str):
        sample["txt"] = text.encode("utf-8")
    else:  # the decoder names the problem (missing_text, or bad_json for a text that is not a string)
        sample["json"] = json.dumps(record, ensure_ascii=False).encode("utf-8")


def _text_lines(path: Path) -> Iterator[dict[str, Any]]:
    index = 0
    with open(path, "rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            yield {"__key__": _key(index), "__source__": f"{path}:{line_number}", "txt": line.rstrip(b"\r\n")}
            index += 1


def _jsonl_video(sample: dict[str, Any], record: dict[str, Any], root: Path) -> None:
    text = record.get("text", record.get("caption"))
    if isinstance(text, str):
        sample["txt"] = text.encode("utf-8")
    frames = record.get("frames")
    if isinstance(record.get("frames_dir"), str) and frames is None:
        folder = root / record["frames_dir"]
        frames = sorted((p for p in folder.iterdir() if _is_image_file(p)), key=_natural_key) if folder.is_dir() else []
    if not isinstance(frames, list):
        return  # no frames: decode_sample says no_frames
    for index, frame in enumerate(frames):
        if isinstance(frame, (str, Path)):
            _add_image(sample, f"frame{index:03d}", root / frame)


# ---------------------------------------------------------------------- helpers


def _add_image(sample: dict[str, Any], stem: str | None, path: Path) -> str:
    """Store an image file's bytes under ``{stem}.{ext}`` (or just ``ext``); return that name.

    JPEG/PNG/WebP bytes are copied untouched; other formats PIL reads are re-encoded as PNG. A missing file adds
    nothing, so the decoder reports ``missing_image`` (or ``no_frames``).
    """
    suffix = path.suffix.lower().lstrip(".")
    ext = suffix if suffix in IMAGE_EXTENSIONS else "png"
    name = ext if stem is None else f"{stem}.{ext}"
    if not path.is_file():
        return name
    data = path.read_bytes()
    if suffix not in IMAGE_EXTENSIONS:
        try:
            with Image.open(io.BytesIO(data)) as image:
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                data = buffer.getvalue()
        except (OSError, ValueError, SyntaxError, EOFError):
            pass  # keep the bytes; decoding them fails later as bad_image
    sample[name] = data
    return name


def _is_image_file(path: Path) -> bool:
    suffix = path.suffix.lower()
    return path.is_file() and (suffix.lstrip(".") in IMAGE_EXTENSIONS or suffix in _OTHER_IMAGE_SUFFIXES)


def _natural_key(path: Path) -> list[tuple[int, str]]:
    # (number, "") for digit runs and (-1, text) otherwise, so any two names compare without a TypeError.
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", path.name)]


def _key(index: int, stem: str | None = None) -> str:
    if not stem:
        return f"{index:08d}"
    return f"{index:08d}_{_UNSAFE_KEY_CHARS.sub('_', stem)[:64]}"
