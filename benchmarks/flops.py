"""Model FLOPs, counted analytically from the suite's sizes (the same count for every implementation).

A matrix multiply of (m, k) by (k, n) is 2mkn FLOPs. Forward FLOPs are ``2 * (weights in matmuls) * tokens``
plus attention (``QK^T`` and ``AV``: ``4 * queries * keys * inner_width``; causal self-attention counts the
unmasked half). Norms, activations, softmax and the optimiser are not counted (as in the usual MFU convention).

Training multiplies forward FLOPs by what the backward pass must really do in a Flamingo, where the backbones are
frozen: x3 for trainable layers and attention (forward, input gradients, weight gradients), x2 for the frozen LM
layers and head (forward and input gradients only: the gradient must reach the bottom cross-attention block), x1 for
the vision tower (no gradient at all). Generation counts the work a cached decoder must do: the prompt once
(images encoded once, cross-attention keys/values once per image and block), then one token per beam per step;
work a decoder repeats (re-encoding images per beam, recomputing keys/values each step) is *not* model FLOPs.
"""

from __future__ import annotations

import math
from typing import Any


def _patches(s: dict[str, Any]) -> int:
    return (s["image_size"] // s["patch_size"]) ** 2


def vision_forward(s: dict[str, Any], images: int) -> float:
    d, patches = s["vision_width"], _patches(s)
    tokens = patches + 1  # + CLS
    embed = 2 * patches * 3 * s["patch_size"] ** 2 * d
    layer = 2 * tokens * (4 * d * d + 8 * d * d) + 4 * tokens * tokens * d
    return images * (embed + s["vision_layers"] * layer)


def resampler_forward(s: dict[str, Any], images: int) -> float:
    d, n, p = s["vision_width"], s["num_latents"], _patches(s)
    inner = s["resampler_heads"] * s["resampler_head_dim"]
    layer = (2 * n * d * inner + 2 * (p + n) * d * 2 * inner + 4 * n * (p + n) * inner + 2 * n * inner * d
             + 4 * n * d * s["ffw_mult"] * d)
    return images * s["resampler_depth"] * layer


def num_blocks(s: dict[str, Any]) -> int:
    return math.ceil(s["lm_layers"] / s["cross_attn_every"])


def xattn_per_token(s: dict[str, Any]) -> float:
    """One token through one GATED XATTN-DENSE block (attending to one image's latents)."""
    d, inner = s["lm_width"], s["cross_attn_heads"] * s["cross_attn_head_dim"]
    return 4 * d * inner + 4 * s["num_latents"] * inner + 4 * d * s["ffw_mult"] * d


def xattn_kv_per_image(s: dict[str, Any]) -> float:
    inner = s["cross_attn_heads"] * s["cross_attn_head_dim"]
    return 2 * s["num_latents"] * s["vision_width"] * 2 * inner


def lm_linear_per_token(s: dict[str, Any]) -> float:
    d = s["lm_width"]
    return s["lm_layers"] * 2 * (4 * d * d + 3 * d * s["lm_intermediate"])


def lm_attention(s: dict[str, Any], queries: int, context_before: int) -> float:
    """Causal self-attention of ``queries`` new tokens after ``context_before`` cached ones, all layers."""
    keys = queries * context_before + queries * (queries + 1) // 2
    return s["lm_layers"] * 4 * keys * s["lm_width"]


def head_per_token(s: dict[str, Any], vocab: int) -> float:
    return 2 * s["lm_width"] * (vocab + 2)


def training_step(s: dict[str, Any], vocab: int) -> dict[str, float]:
    batch, length, images = s["batch"], s["seq_len"], s["batch"] * s["images_per_seq"]
    tokens = batch * length
    parts = {
        "vision": vision_forward(s, images),
        "resampler": 3 * resampler_forward(s, images),
        "cross_attn": 3 * num_blocks(s) * (tokens * xattn_per_token(s) + images * xattn_kv_per_image(s)),
        "lm_attention": 3 * batch * lm_attention(s, length, 0),
        "lm_linear": 2 * tokens * lm_linear_per_token(s),
        "lm_head": 2 * tokens * head_per_token(s, vocab),
    }
    parts["total"] = sum(parts.values())
    return parts


def generation(s: dict[str, Any], vocab: int, prompt_tokens: int, images: int, new_tokens: int,
               beams: int) -> dict[str, float]:
    """Prompt (prefill, producing the first token) plus ``new_tokens - 1`` cached steps of ``beams`` rows."""
    blocks = num_blocks(s)
    prefill = (vision_forward(s, images) + resampler_forward(s, images) + blocks * images * xattn_kv_per_image(s)
               + prompt_tokens * (lm_linear_per_token(s) + blocks * xattn_per_token(s))
               + lm_attention(s, prompt_tokens, 0) + head_per_token(s, vocab))
    decode = 0.0
    for step in range(1, new_tokens):
        per_row = (lm_linear_per_token(s) + blocks * xattn_per_token(s) + head_per_token(s, vocab)
                   + lm_attention(s, 1, prompt_tokens + step - 1))
        decode += beams * per_row
    return {"prefill": prefill, "decode": decode, "total": prefill + decode}
