"""Pretraining the two backbones of the tiny-world Flamingo, the way the paper's backbones were made.

- ``train_tokenizer``: a byte-level BPE on the world's text, with ``<image>`` and ``<|endofchunk|>`` as special
  tokens (so they are never split) plus BOS/EOS/PAD.
- ``pretrain_clip``: a small CLIP-style dual encoder trained contrastively on the image-text pairs (the paper's
  NFNet was contrastively pretrained): a Hugging Face vision tower (a ``ResNetModel``, a CNN like the paper's NFNet,
  or a ``CLIPVisionModel`` ViT) and a ``CLIPTextModel``; Flamingo later keeps only the vision tower, frozen.
- ``pretrain_lm``: a small ``LlamaForCausalLM`` trained on the world's text corpus, which is full of in-context
  structure (repeated formats, words defined and reused within a document) so that the frozen LM can copy from its
  context; the cross-attention layers alone could not add that ability later.

Both are saved with ``save_pretrained`` and later loaded by path exactly like hub models.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm import tqdm
from transformers import (CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModel, LlamaConfig,
                          LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast, ResNetConfig, ResNetModel)

from flamingo_vlm.data.formats import CorruptSample, decode_sample
from flamingo_vlm.data.stream import expand_shards, read_raw_records
from flamingo_vlm.processing.images import ImageProcessor
from flamingo_vlm.tinyworld.geometry import POSITION_NAMES
from flamingo_vlm.tinyworld.image_slots import image_slot_batch, image_slot_loss, median_embedding_norm
from flamingo_vlm.tinyworld.language import POSITION_PHRASES  # the caption's words for each grid cell
from flamingo_vlm.tinyworld.scene import Colour, Shape
from flamingo_vlm.training.config import doc
from flamingo_vlm.training.contention import CpuContention
from flamingo_vlm.training.cpu_precision import resolve_precision

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<image>", "<|endofchunk|>"]
PROBE_CURVE_FILE = "probe_curve.json"  # pretrain_lm's probe scores along the way, in the LM's folder


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
    """The small CLIP-style dual encoder and its contrastive training (the tiny world's vision encoder)."""

    image_size: int = doc("Input side in pixels (the world's images are 64).", 64)
    vision_architecture: str = doc(
        "'resnet' (a CNN, like the paper's NFNet: its final feature map's cells are the tokens) or 'vit' (a CLIP "
        "ViT: its patch tokens).", "resnet")
    resnet_widths: list[int] = doc(
        "ResNet stem width, then one channel count per stage; every stage after the first halves the map (stem /4): "
        "[32, 64, 128] makes an 8x8 map of 128-d tokens from 64px images.", default_factory=lambda: [32, 64, 128])
    resnet_depths: list[int] = doc("Basic residual blocks per ResNet stage.", default_factory=lambda: [1, 1])
    patch_size: int = doc("ViT patch side: (image_size / patch_size)^2 patch tokens reach the resampler.", 8)
    vision_width: int = doc("ViT hidden size.", 128)
    vision_layers: int = doc("ViT layers.", 4)
    text_width: int = doc("Text-tower hidden size (discarded after pretraining).", 128)
    text_layers: int = doc("Text-tower layers.", 2)
    heads: int = doc("Attention heads in the text tower (and the ViT).", 4)
    projection_dim: int = doc("Joint embedding size of the contrastive loss.", 128)
    max_text_tokens: int = doc("Captions are cut to this many tokens.", 48)
    batch_size: int = doc("Pairs per step (the contrastive negatives).", 128)
    shape_negatives: int = doc(
        "Extra negative captions per image: its own caption with one shape word swapped for another. Random batches "
        "are told apart by colour, background and position alone, so without these the encoder never needs shape.",
        0)
    spatial_negatives: int = doc(
        "Extra negative captions per image that say where things are: its own caption with one position or relation "
        "phrase mirrored ('in the top left' -> 'in the bottom left', 'left of' -> 'right of'), so that the pooled "
        "output must say where objects are. In the tiny world one such copy barely did (docs/tiny-world.md), and the "
        "resampler can read where an object is from the CNN's patch features without them.", 0)
    colourless_fraction: float = doc(
        "Share of each batch shown in gray, each against its caption with every colour word taken out (and that "
        "caption's shape-swapped negatives): such pairs can be told apart only by shape, count and place, so the "
        "encoder must see shape even where colour would do. In the tiny world a quarter in gray lowered the "
        "encoder's shape probe (56% against 64%) and slowed the stage 8%, so the recipe does not use it.", 0.0)
    steps: int = doc("Optimiser steps (AdamW, cosine after warm-up).", 1500)
    lr: float = doc("Peak learning rate.", 1e-3)
    warmup_steps: int = doc("Linear warm-up steps.", 100)
    precision: str = doc(
        "bf16 (autocast), fp32, or auto: bf16 unless this CPU runs bf16 matmuls clearly slower than fp32 (measured "
        "at start; training.cpu_precision). The two give different weights.", "bf16")


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


_SHAPE_WORD = re.compile(r"\b(" + "|".join(s.value for s in Shape) + r")(es|s)?\b")


def swap_shape_word(text: str, rng: random.Random) -> str | None:
    """``text`` with one of its shape words (chosen by ``rng``) replaced by another shape, plural kept; None if
    it names no shape. "a red star left of a circle" -> "a red star left of a heart"."""
    matches = list(_SHAPE_WORD.finditer(text))
    if not matches:
        return None
    match = rng.choice(matches)
    new = Shape(rng.choice([s.value for s in Shape if s.value != match.group(1)]))
    word = new.plural if match.group(2) else new.value
    return text[: match.start()] + word + text[match.end():]


# Position names on the 3x3 grid by (row, col), for mirroring a position phrase.
_GRID = {name: (row, col) for row, names in enumerate(POSITION_NAMES) for col, name in enumerate(names)}
_NAME_OF_POSITION_PHRASE = {phrase: name for name, phrase in POSITION_PHRASES.items()}
# Relation words and their mirror images; "from left to right" lists objects in an order that its mirror reverses.
_MIRRORED = {"left of": "right of", "right of": "left of", "above": "below", "below": "above",
             "from left to right": "from right to left"}
_SPATIAL_PHRASE = re.compile(
    r"\b(" + "|".join(re.escape(p) for p in sorted([*_NAME_OF_POSITION_PHRASE, *_MIRRORED], key=len, reverse=True))
    + r")\b", re.IGNORECASE)


def _mirrored_position(name: str, rng: random.Random) -> str:
    """Another grid cell's name that cannot also describe ``name``'s cell: flipped top/bottom, left/right or both
    (whichever flips move it), or, for the centre, any other cell."""
    row, col = _GRID[name]
    if (row, col) == (1, 1):
        return rng.choice([n for n in _GRID if n != name])
    flips = [(2 - row, col), (row, 2 - col), (2 - row, 2 - col)]  # the middle row or column flips onto itself
    new_row, new_col = rng.choice([cell for cell in flips if cell != (row, col)])
    return POSITION_NAMES[new_row][new_col]


def swap_spatial_phrase(text: str, rng: random.Random) -> str | None:
    """``text`` with one of its position or relation phrases (chosen by ``rng``) mirrored, so that the caption
    no longer holds; None if it says nothing about where things are. "a red star in the top left" -> "a red star in
    the bottom left"; "the circle is left of the star" -> "the circle is right of the star"."""
    matches = list(_SPATIAL_PHRASE.finditer(text))
    if not matches:
        return None
    match = rng.choice(matches)
    phrase = match.group(1).lower()
    if phrase in _NAME_OF_POSITION_PHRASE:
        new = POSITION_PHRASES[_mirrored_position(_NAME_OF_POSITION_PHRASE[phrase], rng)]
    else:
        new = _MIRRORED[phrase]
    if match.group(1)[0].isupper():
        new = new[0].upper() + new[1:]
    return text[: match.start()] + new + text[match.end():]


_COLOUR_WORD = re.compile(r"\b(" + "|".join(c.value for c in Colour) + r")\b ?", re.IGNORECASE)


def without_colour_words(text: str) -> str:
    """``text`` with every colour word removed ("a red circle left of a blue star" -> "a circle left of a star").
    The caption only has to be told apart from others by the discarded text tower, so grammar is not mended."""
    return " ".join(_COLOUR_WORD.sub("", text).split())


def to_gray(pixels: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` RGB in [0, 1] -> the same shape in gray (ITU-R BT.601 luma in all three channels)."""
    luma = (pixels * pixels.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)  # (N, 1, H, W)
    return luma.expand_as(pixels)


def negative_captions(tokenizer: PreTrainedTokenizerFast, texts: list[str], text_ids: torch.Tensor,
                      rounds: int, rng: random.Random,
                      swap: Callable[[str, random.Random], str | None] = swap_shape_word,
                      ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``rounds`` altered copies of the captions (``swap`` alters one; shape words by default): per round, ``(N, T)``
    ids and mask like ``text_ids``, and ``(N,)`` whether caption i has a negative in that round (``swap`` found
    something to alter, and the change falls before the truncation point: past it the "negative" would be the
    caption itself)."""
    negatives = []
    for _ in range(rounds):
        swapped = [swap(text, rng) for text in texts]
        ids, mask = _caption_tensors(tokenizer, [s or "" for s in swapped], text_ids.shape[1])
        valid = torch.tensor([s is not None for s in swapped]) & (ids != text_ids).any(1)
        negatives.append((ids, mask, valid))
    return negatives


class DualEncoder(nn.Module):
    """CLIP's contrastive pair of towers around any Hugging Face vision tower.

    The image embedding is the tower's pooled output (a CNN's global average, a ViT's class token), projected; the
    text embedding is ``CLIPTextModel``'s end-of-text state, projected. ``loss`` is CLIP's symmetric InfoNCE, with
    optional extra negative captions that only compete for their image (they have no image of their own).
    """

    def __init__(self, vision: PreTrainedModel, text: CLIPTextModel, vision_dim: int, projection_dim: int) -> None:
        super().__init__()
        self.vision = vision
        self.text = text
        self.visual_projection = nn.Linear(vision_dim, projection_dim, bias=False)
        self.text_projection = nn.Linear(text.config.hidden_size, projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.vision(pixel_values=pixel_values).pooler_output  # (N, D) for a ViT, (N, D, 1, 1) for a CNN
        return F.normalize(self.visual_projection(pooled.flatten(1)).float(), dim=-1)  # (N, E)

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                    buckets: int = 4) -> torch.Tensor:
        """Right-padded captions ``(M, T)`` -> ``(M, E)``. Captions are encoded in ``buckets`` groups of similar
        length, each cut to its own longest caption: the world's captions run from 5 to 50 tokens, so padding
        every one to the longest would more than double the text tower's work."""
        lengths = attention_mask.sum(1)
        order = torch.argsort(lengths)
        chunks = []  # each (m, Dt), shortest captions first
        for rows in order.chunk(buckets):
            length = int(lengths[rows].max())
            chunks.append(self.text(input_ids=input_ids[rows, :length],
                                    attention_mask=attention_mask[rows, :length]).pooler_output)
        pooled = torch.cat(chunks)[torch.argsort(order)]  # back to the input order: (M, Dt)
        return F.normalize(self.text_projection(pooled).float(), dim=-1)  # (M, E)

    def loss(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``input_ids`` hold the N captions of the N images first, then any extra negative captions."""
        images = self.image_embeds(pixel_values)
        texts = self.text_embeds(input_ids, attention_mask)
        num_images = images.shape[0]
        # CLIP clamps the learned temperature at 100 so the logits cannot run away.
        logits = self.logit_scale.exp().clamp(max=100) * images @ texts.T  # (N, N + negatives)
        target = torch.arange(num_images, device=logits.device)
        image_to_text = F.cross_entropy(logits, target)
        text_to_image = F.cross_entropy(logits[:, :num_images].T, target)
        return (image_to_text + text_to_image) / 2


def _vision_tower(settings: ClipSettings) -> tuple[PreTrainedModel, int]:
    """A fresh vision tower for ``settings`` and the width of its pooled output."""
    if settings.vision_architecture == "resnet":
        if len(settings.resnet_widths) != len(settings.resnet_depths) + 1:
            raise ValueError(f"resnet_widths needs one entry for the stem plus one per stage "
                             f"({len(settings.resnet_depths)} stages in resnet_depths), got {settings.resnet_widths}.")
        config = ResNetConfig(embedding_size=settings.resnet_widths[0], hidden_sizes=list(settings.resnet_widths[1:]),
                              depths=list(settings.resnet_depths), layer_type="basic",
                              downsample_in_first_stage=False)
        return ResNetModel(config), settings.resnet_widths[-1]
    if settings.vision_architecture == "vit":
        config = CLIPVisionConfig(image_size=settings.image_size, patch_size=settings.patch_size,
                                  hidden_size=settings.vision_width, intermediate_size=4 * settings.vision_width,
                                  num_hidden_layers=settings.vision_layers, num_attention_heads=settings.heads)
        return CLIPVisionModel(config), settings.vision_width
    raise ValueError(f"ClipSettings.vision_architecture must be 'resnet' or 'vit', not "
                     f"{settings.vision_architecture!r}.")


def _caption_tensors(tokenizer: PreTrainedTokenizerFast, texts: list[str],
                     length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BOS + caption + EOS, right-padded to ``length``: ids and attention mask, each ``(len(texts), length)``."""
    tokens = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=length - 2)["input_ids"]
    ids = torch.full((len(tokens), length), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, row_tokens in enumerate(tokens):
        row = [tokenizer.bos_token_id, *row_tokens, tokenizer.eos_token_id]
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


class ClipBatches:
    """Assembles a CLIP step's inputs from the indices of its pairs: pixels, then the captions and negatives.

    Every pair's caption comes first (row i is image i's), then each round of negatives for the pairs that have one
    (they compete only for their own image). With ``colourless_fraction``, the first rows of every batch are shown
    in gray against their captions without colour words (and those captions' negatives).
    """

    def __init__(self, pixels: torch.Tensor, texts: list[str], tokenizer: PreTrainedTokenizerFast,
                 settings: ClipSettings, processor: ImageProcessor, rng: random.Random) -> None:
        self.pixels = pixels  # (N, H, W, 3) uint8: compact, normalised per batch
        self.mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
        self.std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
        self.text_ids, self.text_mask = _caption_tensors(tokenizer, texts, settings.max_text_tokens)  # (N, T)
        self.negatives = [*negative_captions(tokenizer, texts, self.text_ids, settings.shape_negatives, rng),
                          *negative_captions(tokenizer, texts, self.text_ids, settings.spatial_negatives, rng,
                                             swap=swap_spatial_phrase)]
        self.gray_rows = round(settings.colourless_fraction * settings.batch_size)
        if self.gray_rows:
            # Colourless captions and their negatives go after the coloured ones: row i + N is caption i without
            # colour words, so a batch takes either version of pair i by adding N to its index.
            plain = [without_colour_words(t) for t in texts]
            plain_ids, plain_mask = _caption_tensors(tokenizer, plain, settings.max_text_tokens)
            plain_negatives = [*negative_captions(tokenizer, plain, plain_ids, settings.shape_negatives, rng),
                               *negative_captions(tokenizer, plain, plain_ids, settings.spatial_negatives, rng,
                                                  swap=swap_spatial_phrase)]
            self.text_ids = torch.cat([self.text_ids, plain_ids])  # (2N, T)
            self.text_mask = torch.cat([self.text_mask, plain_mask])
            self.negatives = [(torch.cat([ids, p_ids]), torch.cat([mask, p_mask]), torch.cat([valid, p_valid]))
                              for (ids, mask, valid), (p_ids, p_mask, p_valid)
                              in zip(self.negatives, plain_negatives, strict=True)]
        self.caption_offset = torch.zeros(settings.batch_size, dtype=torch.long)
        self.caption_offset[:self.gray_rows] = len(texts)

    def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B,)`` pair indices -> normalised pixels ``(B, 3, H, W)``, caption ids and mask ``(B + negatives, T)``."""
        pixels = self.pixels[index].permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W) in [0, 1]
        if self.gray_rows:
            pixels[:self.gray_rows] = to_gray(pixels[:self.gray_rows])
        pixels = (pixels - self.mean) / self.std
        captions = index + self.caption_offset[: len(index)]  # each pair's coloured caption, or its colourless one
        chosen = [captions[valid[captions]] for _, _, valid in self.negatives]
        ids = torch.cat([self.text_ids[captions], *(ids[rows] for (ids, _, _), rows in zip(self.negatives, chosen))])
        mask = torch.cat([self.text_mask[captions],
                          *(mask[rows] for (_, mask, _), rows in zip(self.negatives, chosen))])
        return pixels, ids, mask


def pretrain_clip(pairs_pattern: str, tokenizer: PreTrainedTokenizerFast, out_dir: Path, settings: ClipSettings,
                  *, seed: int = 0, max_pairs: int | None = None, progress: bool = True) -> Path:
    """Contrastive image-text pretraining of a small dual encoder.

    Writes ``out_dir/vision`` (the vision tower, a Hugging Face folder with its ``preprocessor_config.json``: what
    Flamingo loads) and ``out_dir/text`` plus ``out_dir/projections.safetensors`` (the rest, for inspection).
    Returns ``out_dir``.
    """
    bf16 = resolve_precision(settings.precision) == "bf16"
    torch.manual_seed(seed)
    rng = random.Random(seed)
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
    batches = ClipBatches(pixels, list(texts), tokenizer, settings, processor, rng)

    vision, vision_dim = _vision_tower(settings)
    # Eager attention: for these short masked captions PyTorch's CPU flash kernel (sdpa) is slow backwards in bf16;
    # its backward took 44% of a bf16 step, and the step ran 1.7x faster with eager (0.28 against 0.47 s on a 2-core
    # Xeon with AMX; in fp32 the two are level, 0.39 s): the recipe's CLIP stage 7 minutes instead of 12.
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=settings.text_width, intermediate_size=4 * settings.text_width,
        num_hidden_layers=settings.text_layers, num_attention_heads=settings.heads,
        max_position_embeddings=settings.max_text_tokens, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, attn_implementation="eager"))
    model = DualEncoder(vision, text, vision_dim, settings.projection_dim)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.1, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(range(settings.steps), desc="CLIP", disable=not progress, dynamic_ncols=True)
    losses = []
    contention = CpuContention(torch.get_num_threads())  # warns when other programs take this run's cores
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * _cosine(step, settings.steps, settings.warmup_steps)
        index = torch.randint(0, len(texts), (settings.batch_size,), generator=generator)
        batch_pixels, batch_ids, batch_mask = batches(index)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(batch_pixels, batch_ids, batch_mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            contention.check()
    model.vision.save_pretrained(out_dir / "vision")
    _write_preprocessor_config(out_dir / "vision", processor)
    model.text.save_pretrained(out_dir / "text")
    save_file({name: param.detach().contiguous() for name, param in model.named_parameters()
               if not name.startswith(("vision.", "text."))}, str(out_dir / "projections.safetensors"))
    return out_dir


def _write_preprocessor_config(out_dir: Path, processor: ImageProcessor) -> None:
    """The Hugging Face file that tells any loader (ours included) this encoder's input statistics."""
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
    precision: str = doc(
        "bf16 (autocast), fp32, or auto: bf16 unless this CPU runs bf16 matmuls clearly slower than fp32 (measured "
        "at start; training.cpu_precision). The two give different weights.", "bf16")
    image_slots: float = doc(
        "Weight, beside the corpus's loss, of a batch of image-slot documents each step (0: none; "
        "tinyworld.image_slots): made-up words bound to categories whose only sign is a random vector added to "
        "the input embeddings of each mention's <image> chunk, as a Flamingo's cross-attention adds an image to "
        "the text after it. An LM pretrained with them (0.5) recalls a word by such a vector 96% of the time; one "
        "without, at chance, and continued training on them does not teach it; a Flamingo on the former still "
        "named made-up words at chance (docs/tiny-world.md), so the recipe leaves this at 0.", 0.0)
    image_slot_batch: int = doc("Image-slot documents per step when image_slots > 0 (about 60 tokens each).", 16)
    probe_every: int = doc(
        "Every this many steps, score the LM with the stage's probe (the recipe's: recall by key, probe.lm_recall) "
        "and keep the curve (lm/probe_curve.json): recall appears suddenly, and the curve shows how near a run "
        "stopped to it. 0: off (each probe takes a few seconds).", 0)


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
                *, seed: int = 0, progress: bool = True,
                probe: Callable[[nn.Module], dict[str, float]] | None = None) -> Path:
    """Causal-LM pretraining of a small Llama on the world's text; returns the saved folder (with tokenizer).

    With a ``probe`` and ``settings.probe_every``, the LM is scored every that many steps and after the last (in
    eval mode, without gradients; training resumes unchanged) and ``out_dir/probe_curve.json`` holds
    ``[{"step": s, "loss": l, **scores}, ...]`` (``loss``: the mean training loss of the last 20 steps).
    """
    bf16 = resolve_precision(settings.precision) == "bf16"
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
    slot_rng = np.random.default_rng([seed, 7])  # its own stream: image_slots 0 leaves the run as it was
    curve: list[dict[str, float]] = []  # the probe's scores along the way
    contention = CpuContention(torch.get_num_threads())
    for step in bar:
        if cursor + settings.batch_size > rows.shape[0]:
            epoch += 1
            rows = _packed_sequences(documents, settings.sequence_length, tokenizer.eos_token_id, rng)
            cursor = 0
        batch = rows[cursor: cursor + settings.batch_size]
        cursor += settings.batch_size
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * _cosine(step, settings.steps, settings.warmup_steps)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=batch).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten())
        if settings.image_slots > 0:
            slots = image_slot_batch(slot_rng, tokenizer, settings.image_slot_batch, settings.width,
                                     median_embedding_norm(model))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = loss + settings.image_slots * image_slot_loss(model, slots)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", epoch=epoch)
            contention.check()
        done = step + 1
        if probe is not None and settings.probe_every > 0 and (done % settings.probe_every == 0
                                                                or done == settings.steps):
            model.eval()
            with torch.no_grad():
                curve.append({"step": done, "loss": float(np.mean(losses[-20:])), **probe(model)})
            model.train()
            bar.write(f"LM step {done}: " + ", ".join(f"{k} {v:.3g}" for k, v in curve[-1].items() if k != "step"))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if curve:
        (out_dir / PROBE_CURVE_FILE).write_text(json.dumps(curve, indent=1))
    return out_dir


def timed(label: str, timings: dict[str, float]):
    """Context manager recording a stage's wall time into ``timings``."""
    class _Timer:
        def __enter__(self) -> None:
            self.start = time.perf_counter()

        def __exit__(self, *exc: object) -> None:
            timings[label] = time.perf_counter() - self.start

    return _Timer()
