"""Loading the frozen causal language model and its tokenizer from a hub id or a local folder."""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


def load_language_model(source: str | os.PathLike, *, random_init: bool = False,
                        dtype: torch.dtype | None = None) -> PreTrainedModel:
    """Load a Hugging Face causal LM (any ``AutoModelForCausalLM``) with SDPA attention.

    ``random_init`` builds the same architecture from its config with fresh weights (a paper ablation).
    """
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as error:
        raise ValueError(f"Could not load a language model config from {str(source)!r}: {error}") from error
    if random_init:
        return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=dtype or torch.float32)
    return AutoModelForCausalLM.from_pretrained(source, attn_implementation="sdpa", dtype=dtype or torch.float32)


def load_tokenizer(source: str | os.PathLike) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ValueError(f"Could not load a tokenizer from {str(source)!r}: {error}") from error


def add_flamingo_tokens(tokenizer: PreTrainedTokenizerBase, media_token: str, end_of_chunk_token: str) -> None:
    """Register ``<image>`` and ``<|endofchunk|>`` as special tokens, and a pad token if the LM has none.

    Padding reuses EOS rather than adding a third new row: padded positions are masked out everywhere.
    """
    tokenizer.add_special_tokens({"extra_special_tokens": [media_token, end_of_chunk_token]},
                                 replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("The tokenizer has neither a pad token nor an EOS token to pad with; set one.")
        tokenizer.pad_token = tokenizer.eos_token


def base_model_and_head(lm: PreTrainedModel) -> tuple[nn.Module, nn.Module]:
    """The decoder stack (returns hidden states) and the output head of a causal LM."""
    head = lm.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(lm).__name__} has no output embeddings; Flamingo needs a causal LM with a head.")
    return lm.base_model, head


def embeddings_are_tied(lm: PreTrainedModel) -> bool:
    head = lm.get_output_embeddings()
    return head is not None and head.weight is lm.get_input_embeddings().weight
