"""Backbones both sides load: one random Llama + tokenizer folder, and the same ViT described twice.

Built once per run by the driver (project interpreter) and read by every worker:
- ``lm/``: a ``LlamaForCausalLM`` with random weights (seeded) and a byte-level BPE tokenizer whose length is the
  LM's vocabulary (so OpenFlamingo's ``resize_token_embeddings`` only appends its two new rows, as ours does);
- ``clip/``: an HF ``CLIPVisionModel`` (our vision tower);
- ``openclip/<name>.json``: the same ViT (width, depth, heads, patch, image size, MLP ratio 4) as an open_clip model
  config, registered by the OpenFlamingo worker with ``open_clip.add_model_config``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from benchmarks.suites import Suite

OPEN_CLIP_NAME = "bench-vit"
MANIFEST = "manifest.json"


def _corpus(seed: int, words: int = 40000) -> list[str]:
    """Pseudo-text with a Zipf-like word distribution: enough merges for a few thousand BPE tokens."""
    rng = random.Random(seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    vocab = ["".join(rng.choice(letters[: rng.randint(6, 26)]) for _ in range(rng.randint(2, 9)))
             for _ in range(6000)]
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    lines, line = [], []
    for word in rng.choices(vocab, weights=weights, k=words):
        line.append(word)
        if len(line) == 12:
            lines.append(" ".join(line) + ".")
            line = []
    return lines


def build_assets(suite: Suite, directory: Path) -> dict[str, Any]:
    """Write the backbones for ``suite`` into ``directory``; returns (and stores) the manifest."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    directory.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=suite.vocab_size, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(_corpus(suite.seed), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    vocab = len(tokenizer)

    torch.manual_seed(suite.seed)
    lm = LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=suite.lm_width, intermediate_size=suite.lm_intermediate,
        num_hidden_layers=suite.lm_layers, num_attention_heads=suite.lm_heads, num_key_value_heads=suite.lm_heads,
        max_position_embeddings=suite.max_positions, bos_token_id=0, eos_token_id=1, pad_token_id=2,
        tie_word_embeddings=False,
    ))
    lm.save_pretrained(directory / "lm")
    tokenizer.save_pretrained(directory / "lm")

    heads = max(1, suite.vision_width // suite.vision_head_width)
    torch.manual_seed(suite.seed + 1)
    CLIPVisionModel(CLIPVisionConfig(
        image_size=suite.image_size, patch_size=suite.patch_size, hidden_size=suite.vision_width,
        num_hidden_layers=suite.vision_layers, num_attention_heads=heads, intermediate_size=4 * suite.vision_width,
    )).save_pretrained(directory / "clip")

    # open_clip needs a text tower in every model config; OpenFlamingo keeps only `.visual`, so it is minimal.
    open_clip_config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": suite.image_size, "layers": suite.vision_layers, "width": suite.vision_width,
                       "head_width": suite.vision_head_width, "patch_size": suite.patch_size, "mlp_ratio": 4.0},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    (directory / "openclip").mkdir(exist_ok=True)
    (directory / "openclip" / f"{OPEN_CLIP_NAME}.json").write_text(json.dumps(open_clip_config, indent=1))

    manifest = {
        "vocab": vocab, "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "pad": tokenizer.pad_token_id,
        "lm_dir": str(directory / "lm"), "clip_dir": str(directory / "clip"),
        "open_clip_config": str(directory / "openclip" / f"{OPEN_CLIP_NAME}.json"), "open_clip_name": OPEN_CLIP_NAME,
        "vision_heads": heads,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def load_manifest(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / MANIFEST).read_text())
