"""Routing and packed cross-attention against a plain masked-attention reference."""

from __future__ import annotations

import pytest
import torch

from flamingo_vlm.model.cross_attention import (
    GatedCrossAttentionBlock,
    MaskedCrossAttention,
    MediaContext,
    route_media,
)

MEDIA = 7  # the <image> token id in these tests


def reference_cross_attention(attn: MaskedCrossAttention, hidden: torch.Tensor, allowed: torch.Tensor,
                              latents: torch.Tensor) -> torch.Tensor:
    """Dense version: every token attends to all media latents through a boolean mask ``allowed`` (B, T, N)."""
    batch, length, _ = hidden.shape
    q = attn.to_q(attn.norm(hidden)).view(batch, length, attn.heads, -1).transpose(1, 2)  # (B, h, T, d)
    keys, values = attn.media_keys_values(latents)  # (N, h, L, d)
    num_media, _, num_latents, _ = keys.shape
    k = keys.permute(1, 0, 2, 3).reshape(attn.heads, num_media * num_latents, -1)  # (h, N*L, d)
    v = values.permute(1, 0, 2, 3).reshape(attn.heads, num_media * num_latents, -1)
    scores = torch.einsum("bhtd,hsd->bhts", q, k) / q.shape[-1] ** 0.5
    mask = allowed.repeat_interleave(num_latents, dim=2)[:, None]  # (B, 1, T, N*L)
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1).nan_to_num(0.0)
    out = torch.einsum("bhts,hsd->bhtd", weights, v).transpose(1, 2).reshape(batch, length, -1)
    reads_any = allowed.any(-1, keepdim=True)
    return attn.to_out(out) * reads_any


def make_ids(rows: list[list[int]]) -> torch.Tensor:
    length = max(len(r) for r in rows)
    return torch.tensor([[0] * (length - len(r)) + r for r in rows])  # left-padded with id 0


@pytest.mark.parametrize("mode", ["last", "all_previous"])
def test_packed_attention_matches_dense_reference(mode: str) -> None:
    torch.manual_seed(0)
    rows = [
        [1, 2, MEDIA, 3, 4, 5, 6, 8, 9, 10, 11, 12, MEDIA, 3, MEDIA, 4, 5],  # a long segment, then short ones
        [MEDIA, 3, 3, 3],
        [1, 2, 3],  # no media at all
        [4, MEDIA, MEDIA, 5, 6],  # two images back to back
    ]
    ids = make_ids(rows)
    mask = (torch.arange(ids.shape[1])[None] >= (ids.shape[1] - torch.tensor([len(r) for r in rows]))[:, None]).long()
    routing = route_media(ids, MEDIA, attention_mask=mask, attend_all_previous=mode == "all_previous")
    num_media = int((ids == MEDIA).sum())
    attn = MaskedCrossAttention(dim=16, media_dim=12, heads=2, head_dim=8)
    hidden = torch.randn(*ids.shape, 16)
    latents = torch.randn(num_media, 5, 12)

    # Which global media each token may read, built independently from the ids.
    allowed = torch.zeros(*ids.shape, num_media, dtype=torch.bool)
    next_media = 0
    for b, row in enumerate(ids.tolist()):
        seen: list[int] = []
        for t, token in enumerate(row):
            if token == MEDIA:
                seen.append(next_media)
                next_media += 1
            if mask[b, t] and seen:
                if mode == "last":
                    allowed[b, t, seen[-1]] = True
                else:
                    allowed[b, t, seen] = True
    keys, values = attn.media_keys_values(latents)
    packed = attn(hidden, routing, keys, values)
    torch.testing.assert_close(packed, reference_cross_attention(attn, hidden, allowed, latents), atol=1e-5, rtol=1e-4)


def test_packing_bounds_padding_and_skips_unrouted_tokens() -> None:
    ids = make_ids([[1, MEDIA] + [3] * 40 + [MEDIA, 4, MEDIA, 5]])
    routing = route_media(ids, MEDIA)
    token_index, slot, group_media, num_groups, chunk = routing.packing_plan()
    assert token_index.numel() == ids.shape[1] - 1  # the first token precedes every image
    assert num_groups * chunk <= 2 * token_index.numel()  # chunking bounds padding waste
    assert slot.unique().numel() == slot.numel()  # no two tokens share a packed slot
    assert group_media.tolist() == sorted(group_media.tolist())


def test_route_media_modes() -> None:
    ids = torch.tensor([[1, MEDIA, 2, 3, MEDIA, 4]])
    last = route_media(ids, MEDIA)
    assert last.token_local.tolist() == [[-1, 0, 0, 0, 1, 1]]
    following = route_media(ids, MEDIA, link_to_next=torch.tensor([True]))
    assert following.token_local.tolist() == [[0, 0, 1, 1, 1, -1]]
    # Continuing a row whose first two media were already seen (a decoding step).
    step = route_media(torch.tensor([[9]]), MEDIA, media_seen=torch.tensor([2]), row_media_offset=torch.tensor([5]),
                       row_media_count=torch.tensor([2]))
    assert step.token_media.tolist() == [[6]] and step.token_local.tolist() == [[1]]


def test_gated_block_caches_media_keys_values_once() -> None:
    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(16, 12, heads=2, head_dim=8, ffw_mult=4, block_index=3)
    ids = torch.tensor([[MEDIA, 1, 2]])
    cache: dict = {}
    context = MediaContext(routing=route_media(ids, MEDIA), latents=torch.randn(1, 5, 12), kv_cache=cache)
    hidden = torch.randn(1, 3, 16)
    first = block(hidden, context)
    assert set(cache) == {3}
    # Later steps need no latents at all: keys/values come from the cache.
    step = MediaContext(routing=route_media(ids, MEDIA), latents=None, kv_cache=cache)
    torch.testing.assert_close(block(hidden, step), first)
    with pytest.raises(RuntimeError, match="neither latents nor cached"):
        block(hidden, MediaContext(routing=route_media(ids, MEDIA), latents=None, kv_cache={}))


def test_gates_start_closed_and_scale_branches() -> None:
    block = GatedCrossAttentionBlock(16, 12, heads=2, head_dim=8, ffw_mult=4, block_index=0)
    assert block.gate_values() == {"attn": 0.0, "ffw": 0.0}
    context = MediaContext(routing=route_media(torch.tensor([[MEDIA, 1]]), MEDIA), latents=torch.randn(1, 5, 12))
    hidden = torch.randn(1, 2, 16)
    assert torch.equal(block(hidden, context), hidden)
    with torch.no_grad():
        block.attn_gate.fill_(0.3)
    assert not torch.equal(block(hidden, context), hidden)
