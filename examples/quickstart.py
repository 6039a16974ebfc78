"""Build a Flamingo from a causal LM and a vision encoder, prompt it, score candidates, save and load it.

Runs offline in seconds: the backbones here are tiny random models made from configs and saved to a temp folder,
which is exactly how a downloaded hub model is loaded (pass a hub id such as "meta-llama/Llama-3.2-1B" and
"openai/clip-vit-large-patch14" instead of the folders to use real ones).
"""

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from flamingo_vlm import Flamingo

work = Path(tempfile.mkdtemp())

# --- stand-ins for hub models: a tiny Llama with a byte-level BPE tokenizer, and a tiny CLIP vision tower ---
bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
bpe.train_from_iterator(["Output: a red circle on a gray background."] * 10,
                        trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"], show_progress=False,
                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")
LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                             num_attention_heads=4, max_position_embeddings=512)).save_pretrained(work / "lm")
tokenizer.save_pretrained(work / "lm")
CLIPVisionModel(CLIPVisionConfig(image_size=64, patch_size=16, hidden_size=48, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=96)).save_pretrained(work / "clip")

# --- the Flamingo API ---
model = Flamingo.from_backbones(lm=str(work / "lm"), vision=str(work / "clip"), cross_attn_every=2,
                                num_latents=16, resampler_depth=2)
processor = model.processor
img1 = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8))
img2 = Image.fromarray(np.full((64, 96, 3), (200, 30, 30), dtype=np.uint8))

inputs = processor("<image>Output: a cat.<|endofchunk|><image>Output:", images=[img1, img2])
logits = model(**inputs).logits                                   # (1, tokens, vocab + 2 new tokens)
out_ids = model.generate(**inputs, max_new_tokens=8, num_beams=3)  # only the new tokens
print("generated:", processor.batch_decode(out_ids))
print("scores:", model.score(**inputs, candidates=[" a dog.", " a red square."]))

model.save_pretrained(work / "flamingo")
reloaded = Flamingo.from_pretrained(work / "flamingo")
print("parameters:", model.num_parameters())
