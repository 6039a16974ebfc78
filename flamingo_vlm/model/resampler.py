"""Resamplers: turn the variable number of visual features of one image or video into a fixed set of tokens.

The Perceiver Resampler (paper App. A.1.1, Fig. 5) is the default; the MLP and Transformer variants exist for the
paper's Table 3 ablation. All take frame features ``(N, F, P, D)`` (N media items, F frames, P patches) with a
``frame_mask`` ``(N, F)`` marking real frames, and return ``(N, num_latents, D)``. Each media item is resampled
independently; an image is a one-frame video.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from flamingo_vlm.model.layers import FeedForward, attend, merge_heads, split_heads


class TemporalEmbedding(nn.Module):
    """One learned embedding per frame (the paper has no spatial embeddings; see :class:`SpatialEmbedding`).

    Videos longer than the trained ``max_frames`` get embeddings linearly interpolated along time (paper App.
    B.1.2: trained on 8 frames, evaluated on 30).
    """

    def __init__(self, max_frames: int, dim: int, max_frames_at_inference: int) -> None:
        super().__init__()
        self.max_frames_at_inference = max_frames_at_inference
        self.weight = nn.Parameter(torch.randn(max_frames, dim) * 0.02)

    def for_frames(self, num_frames: int) -> torch.Tensor:
        """Embeddings for ``num_frames`` frames: ``(num_frames, D)``."""
        trained = self.weight.shape[0]
        if num_frames > self.max_frames_at_inference:
            raise ValueError(
                f"A video has {num_frames} frames but this model supports at most {self.max_frames_at_inference} "
                f"(FlamingoConfig.max_frames_at_inference); sample fewer frames."
            )
        if num_frames <= trained:
            return self.weight[:num_frames]
        # (T, D) -> (1, D, T) for 1-D interpolation along time; align_corners keeps first and last frames exact.
        stretched = F.interpolate(self.weight.T.unsqueeze(0), size=num_frames, mode="linear", align_corners=True)
        return stretched.squeeze(0).T


class SpatialEmbedding(nn.Module):
    """One learned embedding per visual-token position within a frame: an extension, off by default.

    The paper adds none. The Perceiver's attention pooling is blind to token order, so without them the latents
    know where a feature was only as far as the feature itself says so (a ViT's position embeddings say it; so
    does a CNN's zero padding: a fresh resampler names a lone object's grid cell from the tiny-world CNN's
    features 88% of the time without them, 94% with them). ``FlamingoConfig.spatial_positions`` turns them on; in
    the tiny world they did not teach the model where objects are and cost it VQA (docs/tiny-world.md), so the
    recipe leaves them off.
    """

    def __init__(self, positions: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(positions, dim) * 0.02)

    def for_patches(self, num_patches: int) -> torch.Tensor:
        """Embeddings for the ``num_patches`` tokens of one frame: ``(num_patches, D)``."""
        if num_patches != self.weight.shape[0]:
            raise ValueError(
                f"The vision encoder gives {num_patches} tokens per frame, but this model learned spatial embeddings "
                f"for {self.weight.shape[0]} (FlamingoConfig.spatial_positions): give images of the size the model "
                "was trained on (its image processor resizes them), or build the model with spatial_positions=0."
            )
        return self.weight


class PerceiverAttention(nn.Module):
    """Latents attend to concat(media features, latents) (the paper found including latents slightly better)."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * head_dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor, media_mask: torch.Tensor | None) -> torch.Tensor:
        # media: (N, S, D) flattened frame features; latents: (N, L, D); media_mask: (N, S) True = real token
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        q = split_heads(self.to_q(latents), self.heads)  # (N, h, L, d)
        k, v = self.to_kv(torch.cat([media, latents], dim=1)).chunk(2, dim=-1)
        k, v = split_heads(k, self.heads), split_heads(v, self.heads)  # (N, h, S + L, d)
        mask = None
        if media_mask is not None:
            keep_latents = media_mask.new_ones(media_mask.shape[0], latents.shape[1])
            mask = torch.cat([media_mask, keep_latents], dim=1)[:, None, None, :]  # (N, 1, 1, S + L)
        out = attend(q, k, v, attn_mask=mask)
        return self.to_out(merge_heads(out))  # (N, L, D)


class _FrameInput(nn.Module):
    """Adds temporal (and, if asked for, spatial) embeddings and flattens frames x patches into one token axis."""

    def __init__(self, dim: int, max_frames: int, max_frames_at_inference: int, spatial_positions: int = 0) -> None:
        super().__init__()
        self.temporal_embedding = TemporalEmbedding(max_frames, dim, max_frames_at_inference)
        self.spatial_embedding = SpatialEmbedding(spatial_positions, dim) if spatial_positions else None

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        n, frames, patches, dim = features.shape  # (N, F, P, D)
        features = features + self.temporal_embedding.for_frames(frames)[None, :, None, :].to(features.dtype)
        if self.spatial_embedding is not None:
            features = features + self.spatial_embedding.for_patches(patches)[None, None].to(features.dtype)
        tokens = features.reshape(n, frames * patches, dim)  # (N, F*P, D)
        if frame_mask is None or bool(frame_mask.all()):
            return tokens, None
        token_mask = frame_mask[:, :, None].expand(n, frames, patches).reshape(n, frames * patches)
        return tokens, token_mask


class PerceiverResampler(nn.Module):
    """Learned latent queries cross-attend to the media features, ``depth`` times (paper Fig. 5)."""

    def __init__(self, dim: int, depth: int, heads: int, head_dim: int, num_latents: int, max_frames: int,
                 max_frames_at_inference: int, ffw_mult: int = 4, spatial_positions: int = 0) -> None:
        super().__init__()
        self.frame_input = _FrameInput(dim, max_frames, max_frames_at_inference, spatial_positions)
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        self.layers = nn.ModuleList(
            nn.ModuleDict({"attn": PerceiverAttention(dim, heads, head_dim), "ffw": FeedForward(dim, ffw_mult)})
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        media, media_mask = self.frame_input(features, frame_mask)  # (N, F*P, D)
        latents = self.latents.unsqueeze(0).expand(media.shape[0], -1, -1).to(media.dtype)  # (N, L, D)
        for layer in self.layers:
            latents = latents + layer["attn"](media, latents, media_mask)
            latents = latents + layer["ffw"](latents)
        return self.norm(latents)


class TransformerResampler(nn.Module):
    """Ablation: a full transformer over concat(latents, media tokens); the latent positions are the output.

    Unlike the Perceiver, the media tokens are updated too, so each layer costs self-attention over all of them.
    """

    def __init__(self, dim: int, depth: int, heads: int, head_dim: int, num_latents: int, max_frames: int,
                 max_frames_at_inference: int, ffw_mult: int = 4, spatial_positions: int = 0) -> None:
        super().__init__()
        self.heads = heads
        self.frame_input = _FrameInput(dim, max_frames, max_frames_at_inference, spatial_positions)
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        self.layers = nn.ModuleList(
            nn.ModuleDict({
                "norm": nn.LayerNorm(dim),
                "qkv": nn.Linear(dim, 3 * heads * head_dim, bias=False),
                "out": nn.Linear(heads * head_dim, dim, bias=False),
                "ffw": FeedForward(dim, ffw_mult),
            })
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        media, media_mask = self.frame_input(features, frame_mask)
        num_latents = self.latents.shape[0]
        x = torch.cat([self.latents.unsqueeze(0).expand(media.shape[0], -1, -1).to(media.dtype), media], dim=1)
        mask = None
        if media_mask is not None:
            keep = media_mask.new_ones(media_mask.shape[0], num_latents)
            mask = torch.cat([keep, media_mask], dim=1)[:, None, None, :]  # (N, 1, 1, L + S)
        for layer in self.layers:
            q, k, v = layer["qkv"](layer["norm"](x)).chunk(3, dim=-1)
            q, k, v = (split_heads(t, self.heads) for t in (q, k, v))
            x = x + layer["out"](merge_heads(attend(q, k, v, attn_mask=mask)))
            x = x + layer["ffw"](x)
        return self.norm(x[:, :num_latents])


class MLPResampler(nn.Module):
    """Ablation: pool each frame's patches into ``num_latents`` bins, average over the real frames, then a residual
    MLP stack. No attention anywhere."""

    def __init__(self, dim: int, depth: int, num_latents: int, max_frames: int, max_frames_at_inference: int,
                 ffw_mult: int = 4) -> None:
        super().__init__()
        self.num_latents = num_latents
        self.temporal_embedding = TemporalEmbedding(max_frames, dim, max_frames_at_inference)
        self.layers = nn.ModuleList(FeedForward(dim, ffw_mult) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        n, frames, patches, dim = features.shape  # (N, F, P, D)
        features = features + self.temporal_embedding.for_frames(frames)[None, :, None, :].to(features.dtype)
        # (N*F, D, P) -> (N*F, D, L) -> (N, F, L, D)
        pooled = F.adaptive_avg_pool1d(features.reshape(n * frames, patches, dim).transpose(1, 2), self.num_latents)
        pooled = pooled.transpose(1, 2).reshape(n, frames, self.num_latents, dim)
        weights = features.new_ones(n, frames) if frame_mask is None else frame_mask.to(features.dtype)
        x = (pooled * weights[:, :, None, None]).sum(1) / weights.sum(1).clamp_min(1.0)[:, None, None]  # (N, L, D)
        for layer in self.layers:
            x = x + layer(x)
        return self.norm(x)


def build_resampler(kind: str, dim: int, depth: int, heads: int, head_dim: int, num_latents: int, max_frames: int,
                    max_frames_at_inference: int, ffw_mult: int = 4, spatial_positions: int = 0) -> nn.Module:
    """Build the resampler named by ``FlamingoConfig.resampler_type``."""
    if kind == "perceiver":
        return PerceiverResampler(dim, depth, heads, head_dim, num_latents, max_frames, max_frames_at_inference, ffw_mult,
                                  spatial_positions)
    if kind == "transformer":
        return TransformerResampler(dim, depth, heads, head_dim, num_latents, max_frames, max_frames_at_inference,
                                    ffw_mult, spatial_positions)
    if kind == "mlp":
        if spatial_positions:
            raise ValueError("spatial_positions needs an attention resampler (perceiver or transformer): the mlp "
                             "resampler pools tokens in order and has no spatial embeddings; set spatial_positions=0.")
        return MLPResampler(dim, depth, num_latents, max_frames, max_frames_at_inference, ffw_mult)
    raise ValueError(f"Unknown resampler type {kind!r}; choose perceiver, mlp or transformer.")
