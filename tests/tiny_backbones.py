"""Tiny backbones for tests: built from configs, saved with save_pretrained, loaded back by path like a hub id."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import (
    AutoModelForCausalLM,
    CLIPVisionConfig,
    CLIPVisionModel,
    ConvNextConfig,
    ConvNextModel,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    OPTConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    ResNetConfig,
    ResNetModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

CORPUS = [
    "a red circle on a gray background.", "a small blue star and a green square.",
    "Question: what colour is the star? Answer: blue", "Output: two yellow triangles.",
    "the cat sat on the mat.", "Is there a purple heart? yes", "how many circles are there? 3",
] * 20

HIDDEN, LAYERS, HEADS, POSITIONS = 32, 4, 4, 512


def build_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on a few sentences, with BOS/EOS like a Llama tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def lm_config(family: str, vocab_size: int):
    common = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=1)
    if family == "llama":
        return LlamaConfig(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
                           num_attention_heads=HEADS, num_key_value_heads=2, max_position_embeddings=POSITIONS, **common)
    if family == "mistral":
        return MistralConfig(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
                             num_attention_heads=HEADS, num_key_value_heads=2, max_position_embeddings=POSITIONS,
                             sliding_window=None, **common)
    if family == "qwen2":
        return Qwen2Config(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
                           num_attention_heads=HEADS, num_key_value_heads=2, max_position_embeddings=POSITIONS,
                           tie_word_embeddings=True, **common)
    if family == "gpt2":
        return GPT2Config(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=POSITIONS, **common)
    if family == "opt":
        return OPTConfig(hidden_size=HIDDEN, ffn_dim=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         max_position_embeddings=POSITIONS, word_embed_proj_dim=HIDDEN, pad_token_id=1, **common)
    if family == "gpt_neox":
        return GPTNeoXConfig(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
                             num_attention_heads=HEADS, max_position_embeddings=POSITIONS, rotary_pct=0.5, **common)
    raise ValueError(family)


FAMILIES = ("llama", "gpt2", "opt", "gpt_neox", "qwen2", "mistral")


def save_lm(family: str, directory: Path, seed: int = 0) -> Path:
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(lm_config(family, len(tokenizer)))
    # Random init leaves logits tiny; scale so greedy choices are decisive and differences show.
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_vision(kind: str, directory: Path, seed: int = 0, image_size: int = 32) -> Path:
    torch.manual_seed(seed)
    if kind == "clip":
        model = CLIPVisionModel(CLIPVisionConfig(image_size=image_size, patch_size=8, hidden_size=24,
                                                 num_hidden_layers=2, num_attention_heads=2, intermediate_size=48))
    elif kind == "siglip":
        model = SiglipVisionModel(SiglipVisionConfig(image_size=image_size, patch_size=8, hidden_size=24,
                                                     num_hidden_layers=2, num_attention_heads=2,
                                                     intermediate_size=48))
    elif kind == "resnet":  # a CNN: a 32px image -> 4x4 map of 20-d cells (stem /4, second stage /2)
        model = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[12, 20], depths=[1, 1], layer_type="basic",
                                         downsample_in_first_stage=False))
    elif kind == "convnext":  # patch-2 stem, then /2: a 32px image -> 8x8 map of 16-d cells
        model = ConvNextModel(ConvNextConfig(num_channels=3, patch_size=2, hidden_sizes=[8, 16], depths=[1, 1],
                                             num_stages=2))
    else:
        raise ValueError(kind)
    model.save_pretrained(directory)
    if kind in ("resnet", "convnext"):  # CNN configs carry no image size or statistics: the processor file does
        (Path(directory) / "preprocessor_config.json").write_text(json.dumps({
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "size": {"shortest_edge": image_size},
            "crop_size": {"height": image_size, "width": image_size}, "do_center_crop": True}))
    return directory
