"""Few-shot prompts -> model inputs, with every media item encoded once and its latents reused.

In a k-shot sweep the same support images appear in many prompts (and, with ``--limit``, the same queries
in every seed). Re-encoding them for each prompt would make the vision encoder and the Perceiver Resampler
the bottleneck, so :class:`PromptBatcher` keeps the resampled latents ``(L, D)`` of recently used media in an
LRU cache keyed by file path and hands the model ``media_latents`` instead of pixels. This is exact: the
model resamples each media item independently (``Flamingo.encode_media``), so latents do not depend on
which other items share a batch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from flamingo_vlm.evaluation.datasets import MediaRef, media_key

if TYPE_CHECKING:
    from flamingo_vlm.model.flamingo import Flamingo

__all__ = ["PromptBatcher"]


class PromptBatcher:
    """Tokenizes prompts (left-padded, as generation needs) and supplies their media latents from a cache.

    Args:
        model: the Flamingo to feed.
        cache_size: how many media items' latents to keep (each is ``num_latents x dim`` floats on the
            model's device; 1024 items of 64 x 1024 fp32 take 256 MiB).
        encode_batch_size: media items encoded per ``encode_media`` call.
    """

    def __init__(self, model: Flamingo, *, cache_size: int = 1024, encode_batch_size: int = 32) -> None:
        if cache_size < 1 or encode_batch_size < 1:
            raise ValueError("cache_size and encode_batch_size must be >= 1")
        self.model = model
        self.processor = model.processor
        self.cache_size = cache_size
        self.encode_batch_size = encode_batch_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.encoded = 0  # media items run through the vision encoder and resampler
        self.reused = 0  # media items served from the cache (repeats within a batch count too)

    def __call__(self, prompts: Sequence[str], media: Sequence[Sequence[MediaRef]]) -> dict[str, torch.Tensor]:
        """-> ``input_ids`` (B, T), ``attention_mask`` (B, T) and ``media_latents`` (N, L, D), N = all media
        of all prompts in order, on the model's device."""
        if len(prompts) != len(media):
            raise ValueError(f"{len(prompts)} prompts but {len(media)} media lists")
        rows = []
        for index, (prompt, items) in enumerate(zip(prompts, media, strict=True)):
            # The processor's own tokenisation (BOS handling) keeps prompts identical to processor(...) output;
            # its pixel path is skipped because the latents come from the cache.
            ids = self.processor.tokenize(prompt)
            tags = ids.count(self.processor.media_token_id)
            if tags != len(items):
                raise ValueError(f"prompt {index} has {tags} media tokens but {len(items)} media items")
            limit = self.processor.max_length
            if limit is not None and len(ids) > limit:
                raise ValueError(f"a prompt has {len(ids)} tokens but the language model supports at most {limit}; "
                                 f"use fewer shots (or a shorter prompt template)")
            rows.append(ids)
        inputs = self.processor.pad(rows, "left")
        device = self.model.device
        flat = [item for items in media for item in items]
        latents = self.latents(flat)
        return {"input_ids": inputs["input_ids"].to(device), "attention_mask": inputs["attention_mask"].to(device),
                "media_latents": latents}

    def latents(self, media: Sequence[MediaRef]) -> torch.Tensor:
        """Latents ``(N, L, D)`` of ``media`` in order, encoding only the items not cached."""
        keys = [media_key(item) for item in media]
        # Everything one batch needs must be cached at once; grow rather than evict part of it.
        self.cache_size = max(self.cache_size, len(set(keys)))
        missing: dict[str, MediaRef] = {}
        for key, item in zip(keys, media, strict=True):
            if key in self._cache:
                self._cache.move_to_end(key)  # most recently used: evicted last
            elif key not in missing:
                missing[key] = item
        self.reused += len(keys) - len(missing)
        fresh = list(missing.items())
        for start in range(0, len(fresh), self.encode_batch_size):
            chunk = fresh[start:start + self.encode_batch_size]
            encoded = self._encode([item for _, item in chunk])  # (n, L, D)
            for (key, _), latent in zip(chunk, encoded, strict=True):
                self._store(key, latent.clone())  # clone: do not keep the whole chunk alive through a view
        return torch.stack([self._cache[key] for key in keys])  # (N, L, D)

    def _store(self, key: str, latent: torch.Tensor) -> None:
        self._cache[key] = latent
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    @torch.no_grad()
    def _encode(self, items: Sequence[MediaRef]) -> torch.Tensor:
        image_processor = self.processor.image_processor
        pixels = [image_processor.preprocess_media(list(item) if isinstance(item, tuple) else item)
                  for item in items]  # each (F, 3, S, S)
        frames = max(p.shape[0] for p in pixels)
        if frames > self.processor.max_frames:
            raise ValueError(f"a video has {frames} frames but the model supports at most {self.processor.max_frames}")
        batch = pixels[0].new_zeros(len(pixels), frames, *pixels[0].shape[1:])  # (n, F, 3, S, S)
        frame_mask = torch.zeros(len(pixels), frames, dtype=torch.bool)  # (n, F)
        for i, item in enumerate(pixels):
            batch[i, : item.shape[0]] = item
            frame_mask[i, : item.shape[0]] = True
        self.encoded += len(items)
        device = self.model.device
        return self.model.encode_media(batch.to(device), frame_mask.to(device))  # (n, L, D)
