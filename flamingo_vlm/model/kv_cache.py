"""The LM's self-attention cache for decoding: preallocated buffers, and beam reordering that leaves the prompt alone.

Hugging Face's ``DynamicCache`` concatenates every new key/value onto the whole cache at each step (a copy of the
entire prompt's keys and values per layer per token) and reorders beams by gathering the entire cache (another copy).
With a long few-shot prompt both dominate decoding. ``DecodeCache`` keeps each layer's keys and values in a buffer
with room to grow, so a step writes one position and returns a view, and ``reorder_generated`` moves only the
positions generated so far: beams of one prompt share its keys and values exactly, so the prompt part never moves.

Layers with another structure (sliding windows, linear attention) keep Hugging Face's own implementation.
"""

from __future__ import annotations

import copy

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """One layer's keys and values ``(B, h, capacity, d)``; ``keys``/``values`` are views of the filled part."""

    def __init__(self, reserve: int = 32, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.reserve = reserve  # spare positions allocated beyond the first chunk (the tokens to be generated)
        self.length = 0
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def _publish(self) -> None:
        self.keys = self._key_buffer[:, :, : self.length]
        self.values = self._value_buffer[:, :, : self.length]

    def _allocate(self, like: torch.Tensor, capacity: int) -> torch.Tensor:
        batch, heads, _, dim = like.shape
        return like.new_empty(batch, heads, capacity, dim)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object,
               **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        needed = self.length + new
        if self._key_buffer is None or needed > self._key_buffer.shape[2]:
            # Grow geometrically so a long generation copies the cache O(log n) times, not once per token.
            capacity = needed + self.reserve if self._key_buffer is None else max(needed, 2 * self._key_buffer.shape[2])
            keys, values = self._allocate(key_states, capacity), self._allocate(value_states, capacity)
            if self.length:
                keys[:, :, : self.length] = self._key_buffer[:, :, : self.length]
                values[:, :, : self.length] = self._value_buffer[:, :, : self.length]
            self._key_buffer, self._value_buffer = keys, values
        self._key_buffer[:, :, self.length: needed] = key_states
        self._value_buffer[:, :, self.length: needed] = value_states
        self.length = needed
        self._publish()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def reset(self) -> None:
        self.length = 0
        self._key_buffer = self._value_buffer = None
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("GrowingLayer.crop takes a negative number of tokens to remove.")
        self.length = max(0, self.length + tokens_to_remove)
        if self._key_buffer is not None:
            self._publish()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._key_buffer is not None:
            self._key_buffer = self._key_buffer.repeat_interleave(repeats, dim=0)
            self._value_buffer = self._value_buffer.repeat_interleave(repeats, dim=0)
            self._publish()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Rows become ``indices`` of the old rows, every position copied (used once, to expand prompts)."""
        if self._key_buffer is not None:
            self._key_buffer = self._key_buffer.index_select(0, indices)
            self._value_buffer = self._value_buffer.index_select(0, indices)
            self._publish()

    def reorder_generated(self, indices: torch.Tensor, start: int) -> None:
        """Rows become ``indices`` of the old rows for positions ``start:`` only.

        Valid when every row and its source row hold identical keys/values before ``start`` (beams of one prompt).
        """
        if self._key_buffer is None or start >= self.length:
            return
        span = slice(start, self.length)
        self._key_buffer[:, :, span] = self._key_buffer[:, :, span].index_select(0, indices)
        self._value_buffer[:, :, span] = self._value_buffer[:, :, span].index_select(0, indices)


class DecodeCache(DynamicCache):
    """A ``DynamicCache`` whose full-attention layers are ``GrowingLayer`` s (see the module docstring)."""

    def __init__(self, config: object = None, *, reserve: int = 32) -> None:
        super().__init__(config=config)
        self.layers = [GrowingLayer(reserve) if type(layer) is DynamicLayer else layer for layer in self.layers]
        if self.layer_class_to_replicate is DynamicLayer:  # layers appended lazily (config without layer types)
            self.layer_class_to_replicate = lambda: GrowingLayer(reserve)  # type: ignore[assignment]

    def selected(self, indices: torch.Tensor) -> DecodeCache:
        """A new cache whose rows are ``indices`` of this one's rows; this cache is left as it is.

        The same as ``copy.deepcopy`` then ``batch_select_indices``, without first copying every row: each layer's
        selection builds new tensors (``index_select`` / indexing), so copying the layer objects shallowly is enough.
        """
        new = copy.copy(self)
        new.layers = [copy.copy(layer) for layer in self.layers]
        for layer in new.layers:
            layer.batch_select_indices(indices)
        return new

    def reorder_generated(self, indices: torch.Tensor, start: int) -> None:
        """Beam reordering that moves only positions ``start:`` where it can (others reorder everything)."""
        for layer in self.layers:
            if isinstance(layer, GrowingLayer):
                layer.reorder_generated(indices, start)
            else:
                layer.batch_select_indices(indices)
