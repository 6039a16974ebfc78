"""FlamingoConfig: every architectural choice of a Flamingo model, in one serialisable dataclass.

Defaults follow the paper (Alayrac et al. 2022): a 6-layer Perceiver Resampler with 64 latents, one GATED
XATTN-DENSE block before every LM block, tanh gates initialised at zero, squared-ReLU feed-forwards 4x wide,
and image-causal masking where each text token sees only the most recent media item.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

RESAMPLER_TYPES = ("perceiver", "mlp", "transformer")
MEDIA_ATTENTION = ("last", "all_previous")
CROSS_ATTN_STYLES = ("gated_xattn_dense", "vanilla_xattn")
PLACEMENTS = ("interleaved", "grafted")


@dataclass
class FlamingoConfig:
    """Everything needed to rebuild a Flamingo model (besides the backbone weights themselves)."""

    lm: str = ""
    """Hub id or local folder of the causal language model (resolved relative to the checkpoint when saved inside it)."""
    vision: str | None = None
    """Hub id or local folder of the vision encoder; None when a custom ``nn.Module`` was passed in."""
    decoder_layers: str | None = None
    """Dotted path of the LM's decoder-layer ``ModuleList`` (e.g. ``model.layers``); None = look up by model type."""

    # --- Perceiver Resampler (paper App. A.1.1) ---
    resampler_type: Literal["perceiver", "mlp", "transformer"] = "perceiver"
    """Paper ablation (Table 3): ``perceiver`` (default), ``mlp`` or ``transformer``."""
    resampler_dim: int | None = None
    """Width of the resampler; None = the vision encoder's feature width."""
    resampler_depth: int = 6
    resampler_heads: int = 8
    resampler_head_dim: int = 64
    num_latents: int = 64
    """Visual tokens per image or video after resampling."""
    max_frames: int = 8
    """Frames with a learned temporal embedding; longer videos use linearly interpolated embeddings."""
    max_frames_at_inference: int = 64
    """Hard limit on frames per video at any time (interpolating 8 embeddings to thousands is meaningless)."""
    spatial_positions: int = 0
    """Learned spatial embeddings for this many visual tokens per frame (e.g. 64 for an 8x8 map); 0 = none, as in
    the paper. An extension for small CNN encoders, whose features say little about where they are."""

    # --- GATED XATTN-DENSE (paper Sec. 2.2) ---
    cross_attn_every: int = 1
    """Insert a block before every N-th LM block, starting at the first (1 = every block, paper's 3B)."""
    cross_attn_heads: int = 8
    cross_attn_head_dim: int = 64
    ffw_mult: int = 4
    cross_attn_style: Literal["gated_xattn_dense", "vanilla_xattn"] = "gated_xattn_dense"
    """``vanilla_xattn``: cross-attention only, without the dense feed-forward (paper ablation)."""
    use_tanh_gating: bool = True
    """False removes the tanh gates entirely (paper ablation): the model no longer starts as the frozen LM."""
    placement: Literal["interleaved", "grafted"] = "interleaved"
    """``grafted``: the new blocks are stacked on top of the frozen LM instead of between its blocks (ablation)."""

    # --- Image-causal masking (paper Sec. 2.3) ---
    media_attention: Literal["last", "all_previous"] = "last"
    """``last``: a token sees only the most recent media item. ``all_previous``: every earlier one (ablation)."""
    p_next: float = 0.0
    """Training augmentation: per sequence, with this probability text is linked to the *next* media item."""

    # --- Backbones ---
    freeze_lm: bool = True
    """False fine-tunes the whole LM as well (paper ablation)."""
    lm_random_init: bool = False
    """Build the LM from its config with random weights (paper ablation "LM trained from random init")."""
    vision_feature_layer: int = -1
    """Which hidden-state layer of an HF vision tower provides patch features (-1 = last)."""
    vision_drop_cls: bool = True
    """Drop the leading class token of CLIP-style towers (Flamingo uses the flattened patch grid only)."""

    # --- Tokens ---
    media_token: str = "<image>"
    end_of_chunk_token: str = "<|endofchunk|>"

    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata (e.g. how the model was trained); carried through save/load untouched."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when a value is out of range."""

        def check(ok: bool, name: str, message: str) -> None:
            if not ok:
                raise ValueError(f"FlamingoConfig.{name}={getattr(self, name)!r}: {message}")

        check(self.resampler_type in RESAMPLER_TYPES, "resampler_type", f"must be one of {RESAMPLER_TYPES}")
        check(self.media_attention in MEDIA_ATTENTION, "media_attention", f"must be one of {MEDIA_ATTENTION}")
        check(self.cross_attn_style in CROSS_ATTN_STYLES, "cross_attn_style", f"must be one of {CROSS_ATTN_STYLES}")
        check(self.placement in PLACEMENTS, "placement", f"must be one of {PLACEMENTS}")
        for name in ("resampler_depth", "resampler_heads", "resampler_head_dim", "num_latents", "max_frames",
                     "cross_attn_every", "cross_attn_heads", "cross_attn_head_dim", "ffw_mult"):
            check(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name, "must be an integer >= 1")
        check(self.resampler_dim is None or self.resampler_dim >= 1, "resampler_dim", "must be None or >= 1")
        check(isinstance(self.spatial_positions, int) and self.spatial_positions >= 0, "spatial_positions",
              "must be an integer >= 0 (0 = no spatial embeddings)")
        check(not (self.spatial_positions and self.resampler_type == "mlp"), "spatial_positions",
              "needs resampler_type perceiver or transformer (the mlp resampler pools tokens in order)")
        check(self.max_frames_at_inference >= self.max_frames, "max_frames_at_inference", "must be >= max_frames")
        check(0.0 <= self.p_next <= 1.0, "p_next", "must be a probability in [0, 1]")
        check(not (self.lm_random_init and self.freeze_lm), "lm_random_init",
              "a randomly initialised LM must be trained: set freeze_lm=False as well")
        check(self.media_token != self.end_of_chunk_token, "media_token", "must differ from end_of_chunk_token")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FlamingoConfig:
        """Strict: unknown keys are an error (a typo must not silently fall back to a default)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown FlamingoConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as JSON, atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FlamingoConfig:
        try:
            values = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        return cls.from_dict(values)
