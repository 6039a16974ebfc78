"""flamingo-pytorch 0.1.2's side: its PerceiverResampler and GatedCrossAttentionBlock (peer interpreter).

It has no model wrapper, generate or cache, so it enters the module-level comparisons only. Its cross-attention
projects media of the text width (no ``dim_visual``), so every implementation's module measurement uses media
latents as wide as the text; its resampler's constructor argument is ``num_media_embeds``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from benchmarks import workloads as W
from benchmarks.assets import load_manifest
from benchmarks.suites import Suite

MODULE_IMAGE_ID = 10**6


class Implementation:
    name = "flamingo_pytorch"

    def __init__(self, suite: Suite, assets: Path) -> None:
        self.suite = suite
        self.manifest = load_manifest(assets)

    def versions(self) -> dict[str, str]:
        return {"flamingo_pytorch": metadata.version("flamingo_pytorch")}

    def resampler(self) -> tuple[Callable[[], None], dict[str, Any]]:
        from flamingo_pytorch import PerceiverResampler

        s = self.suite
        module = PerceiverResampler(dim=s.vision_width, depth=s.resampler_depth, dim_head=s.resampler_head_dim,
                                    heads=s.resampler_heads, num_latents=s.num_latents,
                                    num_media_embeds=s.images_per_seq, ff_mult=s.ffw_mult)
        patches = (s.image_size // s.patch_size) ** 2
        features = W.media_latents(s.batch * s.images_per_seq, patches, s.vision_width, s.seed).view(
            s.batch, s.images_per_seq, patches, s.vision_width)  # (b, m, n, d)

        def fn() -> None:
            module.zero_grad(set_to_none=True)
            module(features).sum().backward()

        return fn, {"input_shape": list(features.shape)}

    def _block(self) -> Any:
        from flamingo_pytorch import GatedCrossAttentionBlock

        s = self.suite
        return GatedCrossAttentionBlock(dim=s.lm_width, dim_head=s.cross_attn_head_dim, heads=s.cross_attn_heads,
                                        ff_mult=s.ffw_mult)

    def xattn_block(self) -> tuple[Callable[[], None], dict[str, Any]]:
        return W.peer_xattn_block_step(self._block(), self.suite, self.manifest, MODULE_IMAGE_ID)

    def xattn_sweep(self, images: int, mode: str) -> tuple[Callable[[], None], int] | None:
        if mode != "prefill":
            return None  # no cache: a generated token would rerun the whole prompt
        s, m = self.suite, self.manifest
        block = self._block().eval()
        row = W.spread_images(s.module_seq_len, images, m["vocab"], s.seed)
        locations = W.to_ids([row], MODULE_IMAGE_ID, 3) == MODULE_IMAGE_ID
        media = W.media_latents(images, s.num_latents, s.lm_width, s.seed)[None]
        hidden = torch.randn(1, s.module_seq_len, s.lm_width)

        def prefill() -> None:
            with torch.inference_mode():
                block(hidden, media, media_locations=locations)

        return prefill, s.module_seq_len

    def train_step(self, precision: str) -> Any:
        raise NotImplementedError("flamingo-pytorch has no model wrapper: module-level comparisons only")

    def generate(self, *args: Any) -> Any:
        raise NotImplementedError("flamingo-pytorch has no generate")
