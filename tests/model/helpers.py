"""Small builders shared by the model tests."""

from __future__ import annotations

from typing import Any

import torch

from flamingo_vlm import Flamingo

TINY = dict(num_latents=4, resampler_depth=2, resampler_heads=2, resampler_head_dim=8, cross_attn_heads=2,
            cross_attn_head_dim=16, max_frames=8)


def build(lm_dir: str, vision_dir: str, **overrides: Any) -> Flamingo:
    torch.manual_seed(0)
    model = Flamingo.from_backbones(lm_dir, vision_dir, **{**TINY, **overrides})
    return model.eval()


def open_gates(model: Flamingo, value: float = 1.0) -> Flamingo:
    """Make the new layers matter (fresh gates are 0, which hides every cross-attention bug)."""
    with torch.no_grad():
        for block in model.cross_attn_blocks():
            block.attn_gate.fill_(value)
            if block.ffw_gate is not None:
                block.ffw_gate.fill_(value)
    return model
