"""GATED XATTN-DENSE (paper Sec. 2.2) and image-causal routing of text tokens to media (Sec. 2.3).

Routing, not masking: under the paper's default each text token attends to exactly one media item (the most recent
one). Instead of attending to every media item with a mask (cost grows with the number of images in the prompt), we
*pack* the tokens by the media item they read: consecutive tokens reading the same item form a segment, segments are
cut into chunks of about equal length, and each chunk attends only to its own item's latents with one batched
``scaled_dot_product_attention`` call. A 32-shot prompt therefore costs each token the same as a 1-shot prompt.
Tokens that read no media (text before the first image, padding) are left out and get an exact zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from flamingo_vlm.model.layers import FeedForward, attend, merge_heads, split_heads


@dataclass
class MediaRouting:
    """Which media item each text token reads, for one forward pass (shared by all cross-attention blocks).

    ``token_media``: ``(B, T)`` global media index read by each token, -1 for none. Global indices address the flat
    list of media items of the batch (the ``N`` axis of ``pixel_values``), so rows can share media (beams,
    candidate continuations) without copying anything.
    ``row_media``: ``(B, M)`` global indices of each row's media in order, -1 padded (needed by ``all_previous``).
    ``token_local``: ``(B, T)`` index within the row of the media read by each token, -1 for none.
    """

    token_media: torch.Tensor
    token_local: torch.Tensor
    row_media: torch.Tensor
    attend_all_previous: bool = False
    _plan: tuple[torch.Tensor, ...] | None = field(default=None, repr=False)
    _any_media: bool | None = field(default=None, repr=False)

    @property
    def any_media(self) -> bool:
        """Whether any token reads media; computed once (a host sync) and shared by every block."""
        if self._any_media is None:
            self._any_media = bool((self.token_media >= 0).any())
        return self._any_media

    def packing_plan(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
        """Group tokens into (segment, chunk) groups; computed once per forward and reused by every block.

        Returns ``(token_index, slot, group_media, num_groups, chunk)``: flat positions of routed tokens
        ``(Nv,)``, their position ``group * chunk + offset`` in the packed tensor ``(Nv,)``, the media index of
        each group ``(G,)``, ``G`` and the chunk length. When every token is routed and every chunk is full (one
        token per row while decoding, equal segments), ``token_index`` and ``slot`` are both ``arange``: see
        :attr:`packing_is_identity`.
        """
        if self._plan is None:
            self._plan = _pack_tokens(self.token_media)
        return self._plan  # type: ignore[return-value]

    @property
    def packing_is_identity(self) -> bool:
        """True when the packed layout is the tokens' own order, so gathering and scattering can be skipped."""
        token_index, _, _, num_groups, chunk = self.packing_plan()
        return token_index.numel() == self.token_media.numel() == num_groups * chunk


def _pack_tokens(token_media: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    batch, length = token_media.shape
    flat = token_media.reshape(-1)
    token_index = torch.nonzero(flat >= 0).squeeze(1)  # (Nv,) row-major, so each row's tokens stay in order
    if token_index.numel() == 0:
        empty = token_index.new_empty(0)
        return token_index, empty, empty, 0, 1
    media = flat[token_index]
    row = token_index // length
    # A segment starts where the row, the media item, or contiguity changes.
    starts = torch.ones_like(media, dtype=torch.bool)
    starts[1:] = (media[1:] != media[:-1]) | (row[1:] != row[:-1]) | (token_index[1:] != token_index[:-1] + 1)
    segment = torch.cumsum(starts, 0) - 1  # (Nv,)
    segment_start = torch.nonzero(starts).squeeze(1)  # (S,)
    rank = torch.arange(media.numel(), device=media.device) - segment_start[segment]
    num_segments = int(segment_start.numel())
    # Chunks of the mean segment length bound padding waste to at most the number of routed tokens.
    chunk = max(1, -(-media.numel() // num_segments))
    chunk_starts = starts | (rank % chunk == 0)
    group = torch.cumsum(chunk_starts, 0) - 1
    num_groups = int(group[-1]) + 1
    slot = group * chunk + rank % chunk
    group_media = media[chunk_starts]
    return token_index, slot, group_media, num_groups, chunk


def route_media(
    input_ids: torch.Tensor,
    media_token_id: int,
    *,
    attention_mask: torch.Tensor | None = None,
    row_media_offset: torch.Tensor | None = None,
    media_seen: torch.Tensor | None = None,
    row_media_count: torch.Tensor | None = None,
    link_to_next: torch.Tensor | None = None,
    attend_all_previous: bool = False,
) -> MediaRouting:
    """Image-causal routing from the token ids (paper Sec. 2.3).

    A token reads the last media item at or before it: the ``<image>`` token belongs to the image it marks. With
    ``link_to_next`` (``(B,)`` bool, the paper's p_next augmentation) a row's tokens read the first media item at or
    after them instead. ``media_seen`` ``(B,)`` counts the media already consumed by earlier (cached) chunks of the
    same rows; ``row_media_offset`` ``(B,)`` is each row's first global media index and ``row_media_count`` ``(B,)``
    its total media (both default to what ``input_ids`` itself contains).
    """
    is_media = input_ids == media_token_id  # (B, T)
    batch = input_ids.shape[0]
    seen = media_seen if media_seen is not None else input_ids.new_zeros(batch)
    count = row_media_count if row_media_count is not None else seen + is_media.sum(1)
    offset = row_media_offset if row_media_offset is not None else torch.cumsum(count, 0) - count
    running = torch.cumsum(is_media.long(), dim=1) + seen[:, None]  # media seen up to and including t
    local = running - 1
    if link_to_next is not None:
        # next item = the number of media strictly before t; valid only if the row has one
        following = running - is_media.long()
        local = torch.where(link_to_next[:, None], following, local)
        local = torch.where(local < count[:, None], local, torch.full_like(local, -1))
    if attention_mask is not None:
        local = torch.where(attention_mask.bool(), local, torch.full_like(local, -1))
    token_media = torch.where(local >= 0, local + offset[:, None], torch.full_like(local, -1))
    max_media = int(count.max()) if batch else 0
    slots = torch.arange(max_media, device=input_ids.device)
    row_media = torch.where(slots[None, :] < count[:, None], offset[:, None] + slots[None, :], -1)
    return MediaRouting(token_media=token_media, token_local=local, row_media=row_media,
                        attend_all_previous=attend_all_previous)


@dataclass
class MediaContext:
    """Everything the cross-attention blocks read during one LM forward, passed explicitly as a keyword argument.

    ``latents``: ``(N, L, Dm)`` resampled media tokens; may be None when ``kv_cache`` already holds every block's
    keys/values (decoding steps). ``kv_cache``: maps block index -> (keys, values) ``(N, h, L, d)``; blocks fill it
    on the first pass, so cross-attention keys/values are computed once per prompt, not once per generated token.
    """

    routing: MediaRouting
    latents: torch.Tensor | None = None
    kv_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None


class MaskedCrossAttention(nn.Module):
    """Text tokens (queries) attend to the latents of the media item(s) they are routed to."""

    def __init__(self, dim: int, media_dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * head_dim, bias=False)
        self.to_kv = nn.Linear(media_dim, 2 * heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, dim, bias=False)

    def media_keys_values(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L, Dm) -> keys, values (N, h, L, d)."""
        k, v = self.to_kv(latents).chunk(2, dim=-1)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(self, hidden: torch.Tensor, routing: MediaRouting, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        batch, length, dim = hidden.shape
        q = self.to_q(self.norm(hidden))  # (B, T, h*d)
        if routing.attend_all_previous:
            return self.to_out(self._attend_all_previous(q, routing, keys, values))
        token_index, slot, group_media, num_groups, chunk = routing.packing_plan()
        if num_groups == 0:
            return hidden.new_zeros(batch, length, dim)
        width = q.shape[-1]
        identity = routing.packing_is_identity  # e.g. every decoding step: no gather/scatter needed
        if identity:
            packed = q.reshape(num_groups, chunk, width)
        else:
            routed_q = q.reshape(batch * length, width).index_select(0, token_index)  # (Nv, h*d)
            packed = routed_q.new_zeros(num_groups * chunk, width).index_copy(0, slot, routed_q)
            packed = packed.view(num_groups, chunk, width)
        packed = split_heads(packed, self.heads)  # (G, h, C, d)
        attended = attend(
            packed, keys.index_select(0, group_media).to(packed.dtype), values.index_select(0, group_media).to(packed.dtype)
        )  # (G, h, C, d)
        attended = merge_heads(attended).reshape(num_groups * chunk, width)  # (G*C, h*d)
        if identity:
            return self.to_out(attended).to(hidden.dtype).view(batch, length, dim)
        out = hidden.new_zeros(batch * length, dim)  # tokens that read no media get exactly zero
        out = out.index_copy(0, token_index, self.to_out(attended.index_select(0, slot)).to(out.dtype))
        return out.view(batch, length, dim)

    def _attend_all_previous(self, q: torch.Tensor, routing: MediaRouting, keys: torch.Tensor,
                             values: torch.Tensor) -> torch.Tensor:
        """Ablation: each token attends to every media item up to its own (cost grows with the media count)."""
        batch, length, _ = q.shape
        row_media = routing.row_media  # (B, M)
        if row_media.shape[1] == 0:
            return q.new_zeros(q.shape)
        num_media, latents = row_media.shape[1], keys.shape[2]
        safe = row_media.clamp_min(0)
        # (B, M, h, L, d) -> (B, h, M*L, d)
        k = keys[safe].permute(0, 2, 1, 3, 4).reshape(batch, self.heads, num_media * latents, -1).to(q.dtype)
        v = values[safe].permute(0, 2, 1, 3, 4).reshape(batch, self.heads, num_media * latents, -1).to(q.dtype)
        local = routing.token_local  # (B, T)
        media_slot = torch.arange(num_media, device=q.device).repeat_interleave(latents)  # (M*L,)
        allowed = (media_slot[None, None, :] <= local[:, :, None]) & (row_media.repeat_interleave(latents, 1) >= 0)[:, None, :]
        reads_media = local >= 0  # (B, T)
        # Rows with nothing allowed would give NaN; let them attend anywhere and zero them afterwards.
        allowed = allowed | ~reads_media[:, :, None]
        out = attend(split_heads(q, self.heads), k, v, attn_mask=allowed[:, None])
        return merge_heads(out) * reads_media[:, :, None].to(q.dtype)


class GatedCrossAttentionBlock(nn.Module):
    """y = y + tanh(attn_gate) * xattn(y, media); y = y + tanh(ffw_gate) * ffw(y)   (paper Fig. 4).

    Gates start at 0, so a freshly built Flamingo computes exactly what the frozen LM computes.
    """

    def __init__(self, dim: int, media_dim: int, heads: int, head_dim: int, ffw_mult: int, *, block_index: int,
                 use_dense: bool = True, use_tanh_gating: bool = True) -> None:
        super().__init__()
        self.block_index = block_index  # fixed at construction: which slot of the K/V cache this block owns
        self.use_tanh_gating = use_tanh_gating
        self.cross_attn = MaskedCrossAttention(dim, media_dim, heads, head_dim)
        self.ffw = FeedForward(dim, ffw_mult) if use_dense else None
        if use_tanh_gating:
            self.attn_gate = nn.Parameter(torch.zeros(1))
            self.ffw_gate = nn.Parameter(torch.zeros(1)) if use_dense else None

    def gate_values(self) -> dict[str, float]:
        """tanh of each gate (what scales each branch), for logging the paper's Figure 6."""
        if not self.use_tanh_gating:
            return {}
        values = {"attn": float(torch.tanh(self.attn_gate.detach().float()))}
        if self.ffw_gate is not None:
            values["ffw"] = float(torch.tanh(self.ffw_gate.detach().float()))
        return values

    def keys_values(self, context: MediaContext) -> tuple[torch.Tensor, torch.Tensor]:
        cache = context.kv_cache
        if cache is not None and self.block_index in cache:
            return cache[self.block_index]
        if context.latents is None:
            raise RuntimeError("MediaContext has neither latents nor cached keys/values for this block.")
        kv = self.cross_attn.media_keys_values(context.latents)
        if cache is not None:
            cache[self.block_index] = kv
        return kv

    def forward(self, hidden: torch.Tensor, context: MediaContext) -> torch.Tensor:
        if context.routing.token_media.shape[1] != hidden.shape[1]:
            raise ValueError("MediaRouting does not match the sequence length of the hidden states.")
        if context.routing.any_media:
            keys, values = self.keys_values(context)
            attended = self.cross_attn(hidden, context.routing, keys, values)
            hidden = hidden + (torch.tanh(self.attn_gate).to(hidden.dtype) * attended if self.use_tanh_gating else attended)
        if self.ffw is not None:
            dense = self.ffw(hidden)
            hidden = hidden + (torch.tanh(self.ffw_gate).to(hidden.dtype) * dense if self.use_tanh_gating else dense)
        return hidden
