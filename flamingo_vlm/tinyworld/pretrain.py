"""Pretraining the two backbones of the tiny-world Flamingo, the way the paper's backbones were made.

- ``train_tokenizer``: a byte-level BPE on the world's text, with ``<image>`` and ``<|endofchunk|>`` as special
  tokens (so they are never split) plus BOS/EOS/PAD.
- ``pretrain_clip``: a small Hugging Face ``CLIPModel`` trained contrastively on the image-text pairs (the paper's
  NFNet was contrastively pretrained); Flamingo later keeps only its vision tower, frozen.
- ``pretrain_lm``: a small ``LlamaForCausalLM`` trained on the world's text corpus, which is full of in-context
  structure (repeated formats, words defined and reused within a document) so that the frozen LM can copy from its
  context; the cross-attention layers alone could not add that ability later.

Both are saved with ``save_pretrained`` and later loaded by path exactly like hub models.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm import tqdm
from transformers import CLIPConfig, CLIPModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from flamingo_vlm.data.formats import CorruptSample, decode_sample
from flamingo_vlm.data.stream import expand_shards, read_raw_records
from flamingo_vlm.processing.images import ImageProcessor
from flamingo_vlm.training.config import doc

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<image>", "<|endofchunk|>"]


def train_tokenizer(texts: Iterable[str], out_dir: Path, *, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any string is representable) with the Flamingo special tokens; saved to ``out_dir``."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        extra_special_tokens=["<image>", "<|endofchunk|>"])
    tokenizer.save_pretrained(out_dir)
    return tokenizer


# ------------------------------------------------------------------------------------------------------ CLIP
@dataclass
class ClipSettings:
    """The small CLIPModel and its contrastive training (the tiny world's vision encoder)."""

    image_size: int = doc("Input side in pixels (the world's images are 64).", 64)
    patch_size: int = doc("ViT patch side: (image_size / patch_size)^2 patch tokens reach the resampler.", 8)
    vision_width: int = doc("ViT hidden size.", 128)
    vision_layers: int = doc("ViT layers.", 4)
    text_width: int = doc("Text-tower hidden size (discarded after pretraining).", 128)
    text_layers: int = doc("Text-tower layers.", 2)
    heads: int = doc("Attention heads in both towers.", 4)
    projection_dim: int = doc("Joint embedding size of the contrastive loss.", 128)
    max_text_tokens: int = doc("Captions are cut to this many tokens.", 48)
    batch_size: int = doc("Pairs per step (the contrastive negatives).", 128)
    steps: int = doc("Optimiser steps (AdamW, cosine after warm-up).", 1500)
    lr: float = doc("Peak learning rate.", 1e-3)
    warmup_steps: int = doc("Linear warm-up steps.", 100)


def _pairs(pattern: str, limit: int | None = None, *,
           skipped: Counter | None = None) -> Iterator[tuple[np.ndarray, str]]:
    """Decoded (image, text) pairs; corrupt samples are skipped and counted in ``skipped`` by reason."""
    skipped = Counter() if skipped is None else skipped
    count = 0
    for url in expand_shards(pattern):
        for raw in read_raw_records(url):
            try:
                sample = decode_sample("pairs", raw, max_images=None)
            except CorruptSample as error:
                skipped[f"corrupt:{error.reason}"] += 1
                continue
            yield np.asarray(sample.image, dtype=np.uint8), sample.text
            count += 1
            if limit is not None and count >= limit:
                return


def _cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def pretrain_clip(pairs_pattern: str, tokenizer: PreTrainedTokenizerFast, out_dir: Path, settings: ClipSettings,
                  *, seed: int = 0, max_pairs: int | None = None, progress: bool = True) -> Path:
    """Contrastive image-text pretraining of a small CLIP; returns the saved folder."""
    torch.manual_seed(seed)
    skipped: Counter = Counter()
    pairs = list(_pairs(pairs_pattern, max_pairs, skipped=skipped))
    if not pairs:
        raise ValueError(f"No usable image-text pairs in {pairs_pattern} (skipped: {dict(skipped)}).")
    if skipped:  # never silently: a corrupt shard should be noticed
        print(f"CLIP: training on {len(pairs):,} pairs; skipped {sum(skipped.values())} corrupt: {dict(skipped)}")
    images, texts = zip(*pairs)
    pixels = torch.from_numpy(np.stack(images))  # (N, H, W, 3) uint8: compact, normalised per batch
    if pixels.shape[1] != settings.image_size:
        raise ValueError(f"Pairs are {pixels.shape[1]}px but ClipSettings.image_size is {settings.image_size}.")
    processor = ImageProcessor(image_size=settings.image_size)
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    tokens = tokenizer(list(texts), add_special_tokens=False, truncation=True,
                       max_length=settings.max_text_tokens - 2)["input_ids"]
    text_ids = torch.full((len(tokens), settings.max_text_tokens), tokenizer.pad_token_id)
    text_mask = torch.zeros_like(text_ids)
    for i, ids in enumerate(tokens):
        row = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
        text_ids[i, : len(row)] = torch.tensor(row)
        text_mask[i, : len(row)] = 1

    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=settings.text_width,
                         intermediate_size=4 * settings.text_width, num_hidden_layers=settings.text_layers,
                         num_attention_heads=settings.heads, max_position_embeddings=settings.max_text_tokens,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(image_size=settings.image_size, patch_size=settings.patch_size,
                           hidden_size=settings.vision_width, intermediate_size=4 * settings.vision_width,
                           num_hidden_layers=settings.vision_layers, num_attention_heads=settings.heads),
        projection_dim=settings.projection_dim,
    )
    model = CLIPModel(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.1, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(range(settings.steps), desc="CLIP", disable=not progress, dynamic_ncols=True)
    losses = []
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * _cosine(step, settings.steps, settings.warmup_steps)
        index = torch.randint(0, len(tokens), (settings.batch_size,), generator=generator)
        batch_pixels = (pixels[index].permute(0, 3, 1, 2).float() / 255.0 - mean) / std
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(input_ids=text_ids[index], attention_mask=text_mask[index], pixel_values=batch_pixels,
                        return_loss=True)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(out.loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    _write_preprocessor_config(out_dir, processor)
    return out_dir


def _write_preprocessor_config(out_dir: Path, processor: ImageProcessor) -> None:
    """The Hugging Face file that tells any loader (ours included) this encoder's input statistics."""
    import json

    (out_dir / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "image_mean": list(processor.image_mean),
        "image_std": list(processor.image_std), "size": {"shortest_edge": processor.image_size},
        "crop_size": {"height": processor.image_size, "width": processor.image_size}, "do_center_crop": True,
        "do_normalize": True, "do_resize": True, "resample": 3,
    }, indent=2))


# ------------------------------------------------------------------------------------------------------ LM
@dataclass
class LMSettings:
    """The small Llama and its causal-LM pretraining on the world's text."""

    width: int = doc("Hidden size.", 256)
    layers: int = doc("Decoder layers.", 4)
    heads: int = doc("Attention heads.", 4)
    sequence_length: int = doc("Tokens per packed training row.", 256)
    batch_size: int = doc("Rows per step.", 32)
    steps: int = doc("Optimiser steps (AdamW, cosine after warm-up).", 2000)
    lr: float = doc("Peak learning rate.", 2e-3)
    warmup_steps: int = doc("Linear warm-up steps.", 100)


def _packed_sequences(documents: list[list[int]], length: int, eos: int, rng: random.Random) -> torch.Tensor:
    """Concatenate shuffled documents (each ended by EOS) and cut into ``length``-token rows."""
    order = list(range(len(documents)))
    rng.shuffle(order)
    stream: list[int] = []
    for index in order:
        stream.extend(documents[index])
        stream.append(eos)
    rows = len(stream) // length
    return torch.tensor(stream[: rows * length], dtype=torch.long).view(rows, length)


def pretrain_lm(corpus: Iterable[str], tokenizer: PreTrainedTokenizerFast, out_dir: Path, settings: LMSettings,
                *, seed: int = 0, progress: bool = True) -> Path:
    """Causal-LM pretraining of a small Llama on the world's text; returns the saved folder (with tokenizer)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    documents = tokenizer(list(corpus), add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id]
    documents = [bos + d for d in documents if d]
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=settings.width,
                         intermediate_size=int(settings.width * 8 / 3) // 8 * 8,
                         num_hidden_layers=settings.layers, num_attention_heads=settings.heads,
                         num_key_value_heads=settings.heads, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.1, betas=(0.9, 0.95))
    rows = _packed_sequences(documents, settings.sequence_length, tokenizer.eos_token_id, rng)
    epoch, cursor = 0, 0
    bar = tqdm(range(settings.steps), desc="LM", disable=not progress, dynamic_ncols=True)
    losses = []
    for step in bar:
        if cursor + settings.batch_size > rows.shape[0]:
            epoch += 1
            rows = _packed_sequences(documents, settings.sequence_length, tokenizer.eos_token_id, rng)
            cursor = 0
        batch = rows[cursor: cursor + settings.batch_size]
        cursor += settings.batch_size
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * _cosine(step, settings.steps, settings.warmup_steps)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=batch).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", epoch=epoch)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def timed(label: str, timings: dict[str, float]):
    """Context manager recording a stage's wall time into ``timings``."""
    class _Timer:
        def __enter__(self) -> None:
            self.start = time.perf_counter()

        def __exit__(self, *exc: object) -> None:
            timings[label] = time.perf_counter() - self.start

    return _Timer()
