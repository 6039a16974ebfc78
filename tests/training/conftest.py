"""Small shard sets of every kind, written through the project's own `write_shards`, plus corrupt shards."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import webdataset as wds

from flamingo_vlm.data.shards import brace_pattern, write_shards
from tests.conftest import random_image
from tests.model.helpers import TINY

WORDS = ["red", "blue", "circle", "star", "square", "green", "small", "big", "two", "one"]


def _caption(i: int) -> str:
    return " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(3 + i % 4)) + "."


def _image_file(folder: Path, name: str, seed: int) -> str:
    path = folder / name
    random_image(seed, size=24).save(path)
    return name


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_shards(tmp_path_factory.mktemp("shards"))


def make_shards(root: Path) -> dict[str, str]:
    """Write the test datasets under ``root``; returns shard patterns by kind."""
    src = root / "src"
    src.mkdir(parents=True)
    with (src / "pairs.jsonl").open("w") as f:
        for i in range(16):
            f.write(json.dumps({"image": _image_file(src, f"p{i}.png", i), "text": _caption(i)}) + "\n")
    with (src / "docs.jsonl").open("w") as f:
        for i in range(10):
            texts = [_caption(i + k) for k in range(4)]
            info = [{"image_name": _image_file(src, f"d{i}_{k}.png", 100 + i * 5 + k), "matched_text_index": k}
                    for k in range(1 + i % 3)]
            f.write(json.dumps({"text_list": texts, "image_info": info}) + "\n")
    with (src / "video.jsonl").open("w") as f:
        for i in range(6):
            frames = [_image_file(src, f"v{i}_{k}.png", 300 + i * 10 + k) for k in range(3 + i % 3)]
            f.write(json.dumps({"frames": frames, "text": _caption(i)}) + "\n")
    patterns = {}
    for kind, source, per_shard in (("pairs", "pairs.jsonl", 4), ("interleaved", "docs.jsonl", 5),
                                    ("video", "video.jsonl", 6)):
        paths = write_shards(kind, src / source, root / kind, samples_per_shard=per_shard)
        patterns[kind] = brace_pattern(paths)
    (src / "corpus.txt").write_text("".join(" ".join(_caption(i + k) for k in range(6)) + "\n" for i in range(12)))
    patterns["text"] = brace_pattern(write_shards("text", src / "corpus.txt", root / "text", samples_per_shard=5))
    patterns["corrupt_pairs"] = str(_corrupt_pairs_shard(root / "corrupt"))
    return patterns


def _corrupt_pairs_shard(folder: Path) -> Path:
    """Good pairs plus a truncated PNG, a sample without text and a caption JSON that does not parse."""
    folder.mkdir()
    path = folder / "corrupt-000000.tar"

    def png(seed: int) -> bytes:
        buffer = io.BytesIO()
        random_image(seed, size=24).save(buffer, format="PNG")
        return buffer.getvalue()

    with wds.TarWriter(str(path)) as writer:
        for i in range(6):
            writer.write({"__key__": f"good{i}", "png": png(i), "txt": _caption(i).encode()})
        writer.write({"__key__": "truncated", "png": png(9)[:40], "txt": b"a broken image"})
        writer.write({"__key__": "notext", "png": png(10)})
        writer.write({"__key__": "badjson", "png": png(11), "json": b"{not json"})
    return path


def train_values(lm_dir: str, vision_dir: str, output_dir: Path, patterns: dict[str, str], **overrides: Any) -> dict:
    """Raw config values for a tiny run over all three kinds."""
    values: dict[str, Any] = {
        "output_dir": str(output_dir),
        "model": {"lm": lm_dir, "vision": vision_dir, "config": dict(TINY)},
        "datasets": [
            {"name": "docs", "kind": "interleaved", "shards": patterns["interleaved"], "batch_size": 2,
             "max_tokens": 40, "max_media": 2, "shuffle_buffer": 4},
            {"name": "pairs", "kind": "pairs", "shards": patterns["pairs"], "batch_size": 2, "max_tokens": 24,
             "shuffle_buffer": 4},
            {"name": "clips", "kind": "video", "shards": patterns["video"], "batch_size": 2, "max_tokens": 24,
             "shuffle_buffer": 0},
        ],
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "steps": 3,
        "log_every": 1,
        "checkpoint_every": 2,
        "progress": False,
    }
    values.update(overrides)
    return values
