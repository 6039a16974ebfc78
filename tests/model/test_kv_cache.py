"""DecodeCache: same keys/values as Hugging Face's DynamicCache, and beam reordering that leaves the prompt alone."""

from __future__ import annotations

import torch
from transformers import DynamicCache, LlamaConfig, MistralConfig

from flamingo_vlm.model.kv_cache import DecodeCache, GrowingLayer


def _chunks(seed: int, batch: int = 3, heads: int = 2, dim: int = 4, lengths=(7, 1, 1, 5, 1)):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, heads, n, dim, generator=g), torch.randn(batch, heads, n, dim, generator=g))
            for n in lengths]


def test_growing_layer_returns_what_dynamic_cache_returns_across_reallocations():
    config = LlamaConfig(num_hidden_layers=2, hidden_size=8, num_attention_heads=2, vocab_size=10)
    ours, reference = DecodeCache(config=config, reserve=2), DynamicCache(config=config)
    assert all(isinstance(layer, GrowingLayer) for layer in ours.layers)
    for keys, values in _chunks(0):  # 7 + 1 + 1 + 5 + 1 positions with room for 2: grows twice
        for layer in range(2):
            got = ours.update(keys, values, layer)
            want = reference.update(keys, values, layer)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert ours.get_seq_length() == reference.get_seq_length() == 15


def test_reorder_generated_equals_full_reorder_when_rows_share_the_prompt():
    config = LlamaConfig(num_hidden_layers=1, hidden_size=8, num_attention_heads=2, vocab_size=10)
    ours, reference = DecodeCache(config=config), DynamicCache(config=config)
    prompt_k, prompt_v = _chunks(1, batch=1, lengths=(6,))[0]
    for cache in (ours, reference):
        cache.update(prompt_k, prompt_v, 0)
        cache.batch_select_indices(torch.tensor([0, 0, 0]))  # three beams of one prompt
    for step, (keys, values) in enumerate(_chunks(2, lengths=(1, 1, 1, 1))):
        ours.update(keys, values, 0)
        reference.update(keys, values, 0)
        index = torch.tensor([[2, 0, 0], [1, 1, 2], [0, 2, 1], [2, 2, 2]][step])
        ours.reorder_generated(index, start=6)
        reference.batch_select_indices(index)
        assert torch.equal(ours.layers[0].keys, reference.layers[0].keys)
        assert torch.equal(ours.layers[0].values, reference.layers[0].values)


def test_sliding_window_layers_keep_hugging_face_behaviour():
    config = MistralConfig(num_hidden_layers=2, hidden_size=8, num_attention_heads=2, num_key_value_heads=2,
                           vocab_size=10, sliding_window=4)
    cache = DecodeCache(config=config)
    assert not any(isinstance(layer, GrowingLayer) for layer in cache.layers)
    keys, values = _chunks(3, batch=2, lengths=(3,))[0]
    cache.update(keys, values, 0)
    cache.reorder_generated(torch.tensor([1, 0]), start=2)  # falls back to a full reorder
    assert torch.equal(cache.layers[0].keys, keys[[1, 0]])


def test_selected_copies_the_chosen_rows_and_leaves_the_cache_alone():
    for config in (LlamaConfig(num_hidden_layers=2, hidden_size=8, num_attention_heads=2, vocab_size=10),
                   MistralConfig(num_hidden_layers=2, hidden_size=8, num_attention_heads=2, num_key_value_heads=2,
                                 vocab_size=10, sliding_window=4)):
        cache = DecodeCache(config=config)
        for keys, values in _chunks(4, lengths=(3,)):
            for layer in range(2):
                cache.update(keys, values, layer)
        before = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
        rows = torch.tensor([2, 2, 0, 1])
        chosen = cache.selected(rows)
        for layer, (keys, values) in zip(chosen.layers, before, strict=True):
            assert torch.equal(layer.keys, keys[rows]) and torch.equal(layer.values, values[rows])
        # Writing into the selection (as scoring candidates does) never touches the original.
        extra_k, extra_v = _chunks(5, batch=4, lengths=(2,))[0]
        for layer in range(2):
            chosen.update(extra_k, extra_v, layer)
        for layer, (keys, values) in zip(cache.layers, before, strict=True):
            assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)
        assert cache.get_seq_length() == 3 and chosen.get_seq_length() == 5
