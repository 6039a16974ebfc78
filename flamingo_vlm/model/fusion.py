"""Fusion by composition: wrap the LM's decoder layers with visible modules that add the cross-attention blocks.

``FlamingoDecoderLayer(decoder_layer, cross_attn_block)`` replaces the entry in the LM's own layer list, so
``print(model)`` shows the structure; nothing swaps a class at run time and no state is stored on layers. The
``MediaContext`` reaches each wrapper as the keyword argument ``flamingo_media``: Hugging Face models of
transformers 5.x forward unknown keyword arguments from ``model(...)`` down to every decoder layer.

State-dict hooks keep the LM's own checkpoint keys: ``model.layers.3.self_attn.q_proj.weight`` stays that, and the
new block appears beside it as ``model.layers.3.cross_attn_block.*``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from flamingo_vlm.model.cross_attention import GatedCrossAttentionBlock, MediaContext

MEDIA_KWARG = "flamingo_media"

_WRAPPER_CHILDREN = ("decoder_layer", "cross_attn_block")


class FlamingoDecoderLayer(nn.Module):
    """A frozen LM decoder layer with a GATED XATTN-DENSE block before it (or after it, for grafting)."""

    def __init__(self, decoder_layer: nn.Module, cross_attn_block: GatedCrossAttentionBlock | GraftedBlocks | None,
                 *, block_after: bool = False) -> None:
        super().__init__()
        self.cross_attn_block = cross_attn_block
        self.decoder_layer = decoder_layer
        self.block_after = block_after
        self.register_state_dict_post_hook(_drop_decoder_layer_prefix)
        self.register_load_state_dict_pre_hook(_add_decoder_layer_prefix)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        context: MediaContext | None = kwargs.pop(MEDIA_KWARG, None)
        use_block = self.cross_attn_block is not None and context is not None
        if use_block and not self.block_after:
            hidden_states = self.cross_attn_block(hidden_states, context)
        output = self.decoder_layer(hidden_states, *args, **kwargs)
        if use_block and self.block_after:
            if isinstance(output, tuple):
                return (self.cross_attn_block(output[0], context), *output[1:])
            return self.cross_attn_block(output, context)
        return output

    def extra_repr(self) -> str:
        return "block_after=True" if self.block_after else ""


def _drop_decoder_layer_prefix(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str,
                               local_metadata: dict[str, Any]) -> None:
    inner = prefix + "decoder_layer."
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner):]] = state_dict.pop(key)


def _add_decoder_layer_prefix(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        head = key[len(prefix):].split(".", 1)[0]
        if head not in _WRAPPER_CHILDREN:
            state_dict[prefix + "decoder_layer." + key[len(prefix):]] = state_dict.pop(key)


# Where each supported family keeps its decoder layers (attribute path from the *ForCausalLM model).
DECODER_LAYER_PATHS: dict[str, str] = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "gpt2": "transformer.h",
    "opt": "model.decoder.layers",
    "gpt_neox": "gpt_neox.layers",
}


def get_submodule_path(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split("."):
        if not hasattr(module, part):
            raise ValueError(f"{type(root).__name__} has no submodule {path!r} (stopped at {part!r}).")
        module = getattr(module, part)
    return module


def find_decoder_layers(lm: nn.Module, decoder_layers: str | None = None) -> tuple[str, nn.ModuleList]:
    """Return the dotted path and the ``ModuleList`` of the LM's decoder layers.

    Known families are looked up by ``config.model_type``; any other model needs an explicit path.
    """
    model_type = getattr(getattr(lm, "config", None), "model_type", None)
    path = decoder_layers or DECODER_LAYER_PATHS.get(model_type or "")
    if path is None:
        raise ValueError(
            f"Don't know where the decoder layers of model type {model_type!r} are. Pass decoder_layers= with the "
            f"dotted path of its layer ModuleList (for example decoder_layers='model.layers'); known types: "
            f"{sorted(DECODER_LAYER_PATHS)}."
        )
    layers = get_submodule_path(lm, path)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"decoder_layers={path!r} points to a {type(layers).__name__}, expected an nn.ModuleList.")
    return path, layers


def fuse_decoder_layers(layers: nn.ModuleList, blocks: dict[int, nn.Module],
                        *, block_after: bool = False) -> None:
    """Wrap ``layers[i]`` with ``blocks[i]`` in place (layers without a block are wrapped too, with None)."""
    for index, layer in enumerate(layers):
        if isinstance(layer, FlamingoDecoderLayer):
            raise ValueError("These decoder layers are already fused with cross-attention blocks.")
        layers[index] = FlamingoDecoderLayer(layer, blocks.get(index), block_after=block_after)


@contextmanager
def unfused(layers: nn.ModuleList) -> Iterator[None]:
    """Temporarily put the original decoder layers back (e.g. to save the LM exactly as it was loaded)."""
    wrappers = list(layers)
    for index, wrapper in enumerate(wrappers):
        layers[index] = wrapper.decoder_layer
    try:
        yield
    finally:
        for index, wrapper in enumerate(wrappers):
            layers[index] = wrapper


def cross_attn_layer_indices(num_layers: int, every: int) -> list[int]:
    """LM layer indices that get a block: every N-th starting at the first (paper: 9B every 4th, 80B every 7th)."""
    return list(range(0, num_layers, every))


class GraftedBlocks(nn.Module):
    """Ablation "GRAFTING": several blocks stacked on top of the last frozen LM layer, applied in order."""

    def __init__(self, blocks: list[GatedCrossAttentionBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, hidden: torch.Tensor, context: MediaContext) -> torch.Tensor:
        for block in self.blocks:
            hidden = block(hidden, context)
        return hidden


class NewTokenEmbeddings(nn.Module):
    """Trainable rows for the tokens Flamingo adds (``<image>``, ``<|endofchunk|>``), beside the frozen vocabulary.

    The LM's own embedding matrix and output head stay untouched and frozen: the new token ids are embedded by
    ``input_rows`` and everything else by the LM, and the logits of the new ids come from ``output_rows`` (the same
    tensor when the LM ties its input and output embeddings). The new ids are whatever the tokenizer assigned; they
    may lie inside the LM's (padded) embedding matrix or past its end.
    """

    def __init__(self, token_ids: list[int], input_init: torch.Tensor, output_init: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("token_ids", torch.tensor(token_ids, dtype=torch.long), persistent=False)
        self.logits_width = max(token_ids) + 1  # the vocabulary axis must reach the largest new id (a Python int)
        self.input_rows = nn.Parameter(input_init.clone())
        self.output_rows = nn.Parameter(output_init.clone()) if output_init is not None else None

    def embed(self, input_ids: torch.Tensor, base_embedding: nn.Embedding, *, check: bool = True) -> torch.Tensor:
        """(B, T) -> (B, T, E). ``check=False`` skips the vocabulary check (a host sync), for ids this library
        generated itself."""
        matches = input_ids[..., None] == self.token_ids  # (B, T, num_new)
        slot = matches.long().argmax(-1)  # which new token (0 where none)
        is_new = matches.any(-1)
        if check:
            self._check_ids(input_ids, is_new, base_embedding.num_embeddings)
        base_ids = torch.where(is_new, 0, input_ids)
        embeds = base_embedding(base_ids)
        new_embeds = self.input_rows.to(embeds.dtype)[slot]
        return torch.where(is_new[..., None], new_embeds, embeds)

    @staticmethod
    def _check_ids(input_ids: torch.Tensor, is_new: torch.Tensor, num_embeddings: int) -> None:
        outside = ~is_new & ((input_ids >= num_embeddings) | (input_ids < 0))
        if bool(outside.any()):
            bad = int(input_ids[outside][0])
            raise ValueError(f"Token id {bad} is outside the language model's vocabulary "
                             f"({num_embeddings} rows) and is not one of Flamingo's new tokens; the "
                             f"tokenizer does not match the LM.")

    def logits(self, hidden: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
        """Put the new tokens' logits at their ids, growing the vocabulary axis if they lie past its end."""
        rows = self.output_rows if self.output_rows is not None else self.input_rows
        new_logits = hidden @ rows.to(hidden.dtype).T  # (B, T, num_new)
        size = max(base_logits.shape[-1], self.logits_width)
        if size > base_logits.shape[-1]:
            base_logits = torch.nn.functional.pad(base_logits, (0, size - base_logits.shape[-1]), value=float("-inf"))
        return base_logits.index_copy(-1, self.token_ids, new_logits.to(base_logits.dtype))
