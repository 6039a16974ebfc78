"""Fixture data for the data tests: tiny images, local datasets in each source form, shard reading."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from webdataset.tariterators import group_by_keys, tar_file_iterator

from flamingo_vlm.backbones.language import add_flamingo_tokens
from flamingo_vlm.processing.images import ImageProcessor
from flamingo_vlm.processing.processor import FlamingoProcessor
from tests.tiny_backbones import build_tokenizer


def image_array(seed: int, size: tuple[int, int] = (12, 10)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def save_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_jsonl(path: Path, records: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_shard(path: Path) -> list[dict[str, Any]]:
    """The raw samples of one shard, exactly as a WebDataset pipeline groups them."""
    with open(path, "rb") as stream:
        # tar_file_iterator takes the raw byte stream and opens the tar itself.
        files = ({**f, "__url__": str(path)} for f in tar_file_iterator(stream))
        return list(group_by_keys(files))


def tiny_processor(*, bos: bool = True, image_size: int = 16) -> FlamingoProcessor:
    """A processor over the tiny test tokenizer with the Flamingo tokens registered; no model needed."""
    tokenizer = build_tokenizer()
    if not bos:
        tokenizer.bos_token = None
    add_flamingo_tokens(tokenizer, "<image>", "<|endofchunk|>")
    return FlamingoProcessor(tokenizer, ImageProcessor(image_size=image_size))
