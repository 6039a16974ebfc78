"""This project's side of every measurement (project interpreter)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from benchmarks import workloads as W
from benchmarks.assets import load_manifest
from benchmarks.measure import page_in
from benchmarks.suites import Suite

MODULE_IMAGE_ID = 10**6  # any id works for the module-level measurements: only the routing reads it


class Implementation:
    name = "ours"

    def __init__(self, suite: Suite, assets: Path) -> None:
        self.suite = suite
        self.manifest = load_manifest(assets)

    def versions(self) -> dict[str, str]:
        import transformers

        return {"flamingo_vlm": metadata.version("flamingo-vlm"), "transformers": transformers.__version__}

    # ------------------------------------------------------------------ whole model
    def _model(self) -> Any:
        from flamingo_vlm import Flamingo

        s = self.suite
        model = Flamingo.from_backbones(
            self.manifest["lm_dir"], self.manifest["clip_dir"], cross_attn_every=s.cross_attn_every,
            num_latents=s.num_latents, resampler_depth=s.resampler_depth, resampler_heads=s.resampler_heads,
            resampler_head_dim=s.resampler_head_dim, cross_attn_heads=s.cross_attn_heads,
            cross_attn_head_dim=s.cross_attn_head_dim, ffw_mult=s.ffw_mult,
        )
        # Benchmark-only: no stop token, so every call generates exactly `new_tokens` tokens (as OpenFlamingo's
        # min_new_tokens does on its side). The model itself is unchanged.
        model.tokenizer.eos_token = None
        page_in(model)  # weights mapped from the checkpoint count as the model's, not its first call's
        return model

    def train_step(self, precision: str) -> tuple[Callable[[], float], dict[str, Any]]:
        from flamingo_vlm.training.config import OptimConfig
        from flamingo_vlm.training.optim import build_optimizer

        s, m = self.suite, self.manifest
        model = self._model().train()
        rows = W.training_batch(s.batch, s.seq_len, s.images_per_seq, m["vocab"], m["bos"], s.seed)
        ids = W.to_ids(rows, model.media_token_id, model.end_of_chunk_token_id)
        labels = W.labels_for(rows, model.end_of_chunk_token_id)
        mask = torch.ones_like(ids)
        pixel_values = W.pixels(s.batch * s.images_per_seq, s.image_size, s.seed)[:, None]  # (N, 1, 3, H, W)
        trainable = [p for p in model.parameters() if p.requires_grad]
        # Our trainer's optimiser (flamingo_vlm.training.optim: the paper's AdamW groups, PyTorch's fused kernel).
        optimizer = build_optimizer(model, OptimConfig(lr=1e-4, weight_decay=0.1, warmup_steps=0))
        if precision == "bf16-frozen":  # what our trainer does with frozen_dtype: bf16
            from flamingo_vlm.training.trainer import store_frozen_weights

            store_frozen_weights(model, torch.bfloat16)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16"))

        def step() -> float:
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            return float(loss)

        info = {"tokens": ids.numel(), "trainable_params": sum(p.numel() for p in trainable)}
        return step, info

    def generate(self, shots: int, num_beams: int, new_tokens: int,
                 dtype: str = "fp32") -> tuple[Callable, Callable, dict[str, Any]]:
        s, m = self.suite, self.manifest
        torch_dtype = W.torch_dtype(dtype)
        model = self._model().eval().to(torch_dtype)  # bf16: what `flamingo generate --dtype bf16` does
        row = W.few_shot_prompt(shots, s.caption_tokens, m["vocab"], m["bos"], s.seed)
        ids = W.to_ids([row], model.media_token_id, model.end_of_chunk_token_id)
        mask = torch.ones_like(ids)
        pixel_values = W.pixels(W.count_images(row), s.image_size, s.seed)[:, None].to(torch_dtype)

        def run(count: int) -> int:
            with torch.inference_mode():
                out = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixel_values,
                                     max_new_tokens=count, num_beams=num_beams, stop_at_end_of_chunk=False)
            return int(out.shape[1])

        info = {"prompt_tokens": ids.shape[1], "images": W.count_images(row)}
        return (lambda: run(1)), (lambda: run(new_tokens)), info

    # ------------------------------------------------------------------ modules
    def resampler(self) -> tuple[Callable[[], None], dict[str, Any]]:
        from flamingo_vlm.model.resampler import PerceiverResampler

        s = self.suite
        module = PerceiverResampler(s.vision_width, s.resampler_depth, s.resampler_heads, s.resampler_head_dim,
                                    s.num_latents, max_frames=8, max_frames_at_inference=64, ffw_mult=s.ffw_mult)
        patches = (s.image_size // s.patch_size) ** 2
        features = W.media_latents(s.batch * s.images_per_seq, patches, s.vision_width, s.seed)[:, None]  # (N,1,P,D)

        def fn() -> None:
            module.zero_grad(set_to_none=True)
            module(features).sum().backward()

        return fn, {"input_shape": list(features.shape)}

    def _block(self) -> Any:
        from flamingo_vlm.model.cross_attention import GatedCrossAttentionBlock

        s = self.suite
        return GatedCrossAttentionBlock(s.lm_width, s.lm_width, s.cross_attn_heads, s.cross_attn_head_dim,
                                        s.ffw_mult, block_index=0)

    def xattn_block(self) -> tuple[Callable[[], None], dict[str, Any]]:
        from flamingo_vlm.model.cross_attention import MediaContext, route_media

        s, m = self.suite, self.manifest
        block = self._block()
        rows = W.training_batch(s.batch, s.seq_len, s.images_per_seq, m["vocab"], m["bos"], s.seed)
        ids = W.to_ids(rows, MODULE_IMAGE_ID, 3)
        hidden = torch.randn(s.batch, s.seq_len, s.lm_width, requires_grad=True)
        latents = W.media_latents(s.batch * s.images_per_seq, s.num_latents, s.lm_width, s.seed).requires_grad_()

        def fn() -> None:
            block.zero_grad(set_to_none=True)
            hidden.grad = latents.grad = None
            context = MediaContext(routing=route_media(ids, MODULE_IMAGE_ID), latents=latents)
            block(hidden, context).sum().backward()

        return fn, {"hidden_shape": list(hidden.shape), "media_shape": list(latents.shape)}

    def xattn_sweep(self, images: int, mode: str) -> tuple[Callable[[], None], int] | None:
        """One block, inference. ``prefill``: a ``module_seq_len`` prompt holding ``images`` images (keys/values
        computed in the call). ``decode``: one generated token after that prompt (keys/values cached, as in
        ``generate``)."""
        from flamingo_vlm.model.cross_attention import MediaContext, route_media

        s, m = self.suite, self.manifest
        block = self._block().eval()
        row = W.spread_images(s.module_seq_len, images, m["vocab"], s.seed)
        ids = W.to_ids([row], MODULE_IMAGE_ID, 3)
        latents = W.media_latents(images, s.num_latents, s.lm_width, s.seed)
        if mode == "prefill":
            hidden = torch.randn(1, s.module_seq_len, s.lm_width)

            def prefill() -> None:
                with torch.inference_mode():
                    block(hidden, MediaContext(routing=route_media(ids, MODULE_IMAGE_ID), latents=latents))

            return prefill, s.module_seq_len
        with torch.inference_mode():
            cache = {0: block.cross_attn.media_keys_values(latents)}
        token = torch.tensor([[5]])
        hidden1 = torch.randn(1, 1, s.lm_width)
        count, offset = torch.tensor([images]), torch.tensor([0])

        def decode() -> None:
            with torch.inference_mode():
                routing = route_media(token, MODULE_IMAGE_ID, media_seen=count, row_media_offset=offset,
                                      row_media_count=count)
                block(hidden1, MediaContext(routing=routing, latents=None, kv_cache=cache))

        return decode, 1
