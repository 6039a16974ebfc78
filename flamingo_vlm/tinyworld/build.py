"""Build everything the tiny-world recipe needs in one call: training shards, LM corpus, tokenizer text, eval sets.

Layout under ``out_dir``::

    train/pairs-NNNNNN.tar        image-text pairs           (datasets.py)
    train/video-NNNNNN.tar        8-frame clips + text
    train/interleaved-NNNNNN.tar  interleaved documents (MMC4 layout)
    train/text-NNNNNN.tar         the LM corpus's documents as text shards (a Flamingo stage may keep training on them)
    lm/corpus.txt                 LM pretraining corpus, one document per line (corpus.py)
    lm/tokenizer_text.txt         text for training the BPE tokenizer, one text per line
    eval/README.md, eval/{coco,vqa,video_qa,novel_words,shapes}/{eval,support}/...   (evalsets.py)
    tiny_world.json               manifest: seeds, counts, paths (relative to out_dir)

``scale`` multiplies every count (at least 1 each); ``scale=1.0`` gives :data:`DEFAULT_COUNTS`.

Every sample depends only on ``(seed, stream, index)``, so the parts can be written in any order or process: with
``workers=2`` the LM text (corpus and tokenizer text) is written by a second process while this one renders the
training shards, the two longest parts (about 80 s each at scale 1.0), and the files are byte for byte the same.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .corpus import iter_tokenizer_text, read_lm_corpus, write_lm_corpus
from .datasets import (
    build_training_sets,
    has_eval_format,
    iter_document_records,
    reserved_eval_words,
    uses_heldout_wording,
)
from .evalsets import build_eval_sets

__all__ = ["DEFAULT_COUNTS", "EVAL_SEED_OFFSET", "build_tiny_world", "tiny_world_data_command"]

# Counts at scale 1.0. Training sets: about the sizes a small Flamingo trains on for a few thousand steps;
# 50k LM documents are ~4M words (a few epochs for a 2k-step LM pretraining at batch 32 x 256 tokens).
DEFAULT_COUNTS: dict[str, int] = {
    "num_pairs": 20_000,
    "num_videos": 3_000,
    "num_documents": 8_000,
    "lm_documents": 50_000,
    "tokenizer_documents": 5_000,
    "num_captioning": 500,
    "num_vqa_images": 500,
    "num_video_qa": 500,
    "num_novel_words": 500,
    "num_shapes": 400,
    "num_support": 300,
}
# The eval sets use seed + this offset (and random streams no training set uses), so their scenes are fresh.
EVAL_SEED_OFFSET = 1_000


def _scaled(scale: float) -> dict[str, int]:
    return {k: max(1, round(v * scale)) for k, v in DEFAULT_COUNTS.items()}


def build_tiny_world(out_dir: str | os.PathLike, *, seed: int = 0, scale: float = 1.0, image_size: int = 64,
                     progress: bool = True, verify: bool = True, workers: int = 2) -> dict[str, Any]:
    """Write the whole tiny world under ``out_dir`` (layout in the module docstring) and return its paths.

    Returns ``{"train": {kind: brace pattern}, "lm_corpus": path, "tokenizer_text": path, "eval": {...},
    "manifest": path, "counts": {...}, "seconds": {stage: wall time}}``. With ``verify`` the written training
    text and corpus are scanned once more for evaluation formats, held-out wordings and the novel-word eval
    words (cheap next to building; raises ``RuntimeError`` on a leak). ``workers=2`` writes the LM text in a
    second process (same files, about 40% less wall time on two cores); ``workers=1`` does everything here.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if workers not in (1, 2):
        raise ValueError(f"workers must be 1 or 2 (the build has two long independent parts), got {workers}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = _scaled(scale)
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    # A forked child (as torch's DataLoader workers are) writes only text: no torch, no thread pools. "spawn"
    # would re-import the caller's main module, which breaks scripts without an ``if __name__`` guard, so where
    # fork is missing (Windows) everything runs here.
    if workers == 2 and "fork" in multiprocessing.get_all_start_methods():
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            lm_text = pool.submit(_write_lm_text, out / "lm", seed, counts, False)
            if progress:
                print("tiny-world LM corpus and tokenizer text: being written by a second process", file=sys.stderr)
            train, seconds["train"] = _write_training_sets(out, seed, counts, image_size, progress)
            corpus, tokenizer_text, seconds["lm"] = lm_text.result()
    else:
        train, seconds["train"] = _write_training_sets(out, seed, counts, image_size, progress)
        corpus, tokenizer_text, seconds["lm"] = _write_lm_text(out / "lm", seed, counts, progress)
    seconds["train_and_lm_wall"] = time.perf_counter() - start
    start = time.perf_counter()
    train["text"] = _write_text_shards(out / "train", corpus)
    seconds["text_shards"] = time.perf_counter() - start

    start = time.perf_counter()
    eval_sets = build_eval_sets(
        out / "eval", seed=seed + EVAL_SEED_OFFSET, image_size=image_size, progress=progress,
        **{k: counts[k] for k in ("num_captioning", "num_vqa_images", "num_video_qa", "num_novel_words",
                                  "num_shapes", "num_support")},
    )
    seconds["eval"] = time.perf_counter() - start

    if verify:
        start = time.perf_counter()
        _verify(train, corpus, set(eval_sets["novel_word_binding"]) | reserved_eval_words())
        seconds["verify"] = time.perf_counter() - start

    manifest = {
        "seed": seed,
        "eval_seed": seed + EVAL_SEED_OFFSET,
        "scale": scale,
        "image_size": image_size,
        "counts": counts,
        "train": {k: os.path.relpath(v, out) for k, v in train.items()},
        "lm_corpus": os.path.relpath(corpus, out),
        "tokenizer_text": os.path.relpath(tokenizer_text, out),
        "eval_readme": os.path.relpath(eval_sets["readme"], out),
        "novel_word_binding": eval_sets["novel_word_binding"],
    }
    (out / "tiny_world.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return {"train": train, "lm_corpus": str(corpus), "tokenizer_text": str(tokenizer_text), "eval": eval_sets,
            "manifest": str(out / "tiny_world.json"), "counts": counts, "seconds": seconds}


def _write_training_sets(out: Path, seed: int, counts: dict[str, int], image_size: int,
                         progress: bool) -> tuple[dict[str, str], float]:
    """The training shards; returns their brace patterns by kind and the seconds taken."""
    start = time.perf_counter()
    train = build_training_sets(out / "train", seed=seed, num_pairs=counts["num_pairs"],
                                num_videos=counts["num_videos"], num_documents=counts["num_documents"],
                                image_size=image_size, progress=progress)
    return train, time.perf_counter() - start


def _write_lm_text(lm_dir: Path, seed: int, counts: dict[str, int], progress: bool) -> tuple[Path, Path, float]:
    """The LM corpus and the tokenizer text; returns their paths and the seconds taken (run in a worker too)."""
    start = time.perf_counter()
    corpus = write_lm_corpus(lm_dir / "corpus.txt", seed=seed, num_documents=counts["lm_documents"],
                             progress=progress)
    tokenizer_text = lm_dir / "tokenizer_text.txt"
    texts = iter_tokenizer_text(seed=seed, num_documents=counts["tokenizer_documents"])
    texts = tqdm(texts, desc="tiny-world tokenizer text", unit="text", disable=not progress)
    with open(tokenizer_text, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(text.replace("\n", " ") + "\n" for text in texts)
    return corpus, tokenizer_text, time.perf_counter() - start


def _write_text_shards(train_dir: Path, corpus: Path) -> str:
    """The LM corpus as ``text`` shards (one document per sample), read by the training engine like any user's."""
    from flamingo_vlm.data.shards import brace_pattern, write_shards

    return brace_pattern(write_shards("text", corpus, train_dir, samples_per_shard=5000, overwrite=True))


def _training_texts(train: dict[str, str]) -> list[str]:
    """Every text of the pairs and video shards, and every sentence of the interleaved documents."""
    from flamingo_vlm.data.stream import expand_shards, read_raw_records

    texts: list[str] = []
    for kind in ("pairs", "video"):
        if kind in train:
            texts += [raw["txt"].decode("utf-8") for url in expand_shards(train[kind]) for raw in read_raw_records(url)]
    if "interleaved" in train:
        texts += [" ".join(doc["text_list"]) for doc in iter_document_records(train["interleaved"])]
    return texts


def _verify(train: dict[str, str], corpus: Path, eval_words: set[str]) -> None:
    """Raise if training text or the corpus holds an eval format, a held-out wording or a novel-word eval word."""
    word = re.compile(r"[a-z]+")
    for where, texts in (("training shards", _training_texts(train)), ("LM corpus", read_lm_corpus(corpus))):
        for text in texts:
            if has_eval_format(text) or uses_heldout_wording(text):
                raise RuntimeError(f"{where}: evaluation format or held-out wording in {text[:200]!r}")
            leaked = eval_words & set(word.findall(text.lower()))  # "Zib: " labels are capitalised words
            if leaked:
                raise RuntimeError(f"{where}: novel-word eval word(s) {sorted(leaked)} in {text[:200]!r}")


def tiny_world_data_command(out_dir: str, seed: int, scale: float) -> int:
    """``flamingo data tiny-world OUT_DIR``: build the tiny world and print where everything went; 0 on success."""
    try:
        result = build_tiny_world(out_dir, seed=seed, scale=scale)
    except (ValueError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    counts = result["counts"]
    print(f"tiny world (seed {seed}, scale {scale}) written to {out_dir}:")
    for kind, pattern in result["train"].items():
        print(f"  train {kind:<12} {pattern}")
    print(f"  LM corpus          {result['lm_corpus']} ({counts['lm_documents']} documents, one per line)")
    print(f"  tokenizer text     {result['tokenizer_text']}")
    print(f"  eval sets          {result['eval']['readme']}")
    print(f"  manifest           {result['manifest']}")
    print("  seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result["seconds"].items()))
    return 0
