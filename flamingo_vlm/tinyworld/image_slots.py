"""Image-slot documents: LM pretraining text whose keys are vectors added to the input, not tokens.

A Flamingo's cross-attention adds what an image shows to the residual stream of the text after the image; the
frozen LM must then find, among a prompt's examples, the one whose image matches the query's and copy the word
after it. A small LM pretrained on text alone looks things up by token identity only: given
``<image>this is a dax.<|endofchunk|>`` chunks with a random vector added to each chunk's input embeddings, it
picks the word of the chunk whose vector matches the query's at chance, and 1,400 more steps of exactly such
documents did not teach it (docs/tiny-world.md, lab notebook of 2026-12-07). Mixed into its pretraining from the
start, while its look-up forms, they do: recall by the vector 96% after the recipe's 2,000 steps, with its text
recall intact. That alone is not enough: a Flamingo stage on such an LM still named made-up words at chance (one
run, same lab notebook), so the recipe leaves them off (``lm.image_slots: 0``) until what the cross-attention
writes is made to look like these vectors.

Each document names 2-5 categories with made-up words (fresh per document, never an evaluation word); every mention
is one chunk ``<image>{phrase with the word}<|endofchunk|>``, and every input embedding of the chunk from its
``<image>`` token to the token before ``<|endofchunk|>`` gets the category's vector added (a random direction with a
norm of 0.25-1x the median token embedding's, plus up to 60% of that as fresh noise per mention, so that matching is
by similarity, as two pictures of one shape are similar and not equal). The last one or two mentions repeat a
category already named, so their word can be told only by matching vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from flamingo_vlm.tinyworld.datasets import NOVEL_WORD_PHRASES, training_words

#: A category vector's norm, as a fraction of the median token embedding norm: drawn from this range.
VECTOR_SCALE = (0.25, 1.0)
#: Per-mention noise, as a fraction of the category vector's norm: drawn per document from [0, MAX_NOISE].
MAX_NOISE = 0.6


Span = tuple[int, int, torch.Tensor]  # (first position, end position, vector added to the positions between)


@dataclass
class ImageSlotBatch:
    """Padded documents and what to add to their input embeddings."""

    input_ids: torch.Tensor  # (B, L) token ids, padded with EOS
    attention_mask: torch.Tensor  # (B, L) 1 on real tokens
    added: torch.Tensor  # (B, L, D) vectors to add to the input embeddings (0 outside chunks)
    categories: list[list[int]]  # per document, the category of each chunk in order (for tests and probes)


def _document(rng: np.random.Generator, tokenizer: PreTrainedTokenizerBase, width: int, embedding_norm: float,
              media_token: str, end_of_chunk_token: str) -> tuple[list[int], list[Span], list[int]]:
    """One document -> (token ids, [(start, end, vector)] spans to add to, categories of its chunks)."""
    k = int(rng.integers(2, 6))
    words = training_words(rng, k)
    scale = float(rng.uniform(*VECTOR_SCALE)) * embedding_norm
    generator = torch.Generator().manual_seed(int(rng.integers(1 << 62)))
    vectors = F.normalize(torch.randn(k, width, generator=generator), dim=-1) * scale  # (k, D)
    noise = float(rng.uniform(0.0, MAX_NOISE))
    order = [c for c in range(k) for _ in range(int(rng.integers(1, 3)))]
    rng.shuffle(order)
    order += [int(rng.integers(k))] * int(rng.integers(1, 3))  # repeats of a named category end the document
    phrase = NOVEL_WORD_PHRASES[int(rng.integers(len(NOVEL_WORD_PHRASES)))]
    media_id = tokenizer.convert_tokens_to_ids(media_token)
    end_id = tokenizer.convert_tokens_to_ids(end_of_chunk_token)
    ids, spans = [tokenizer.bos_token_id], []
    for c in order:
        jitter = F.normalize(torch.randn(width, generator=generator), dim=-1) * noise * scale
        start = len(ids)
        ids.append(media_id)
        ids += tokenizer(phrase.format(word=words[c]), add_special_tokens=False)["input_ids"]
        spans.append((start, len(ids), vectors[c] + jitter))  # <image> .. the token before <|endofchunk|>
        ids.append(end_id)
    return ids, spans, order


def image_slot_batch(rng: np.random.Generator, tokenizer: PreTrainedTokenizerBase, count: int, width: int,
                     embedding_norm: float, *, media_token: str = "<image>",
                     end_of_chunk_token: str = "<|endofchunk|>") -> ImageSlotBatch:
    """``count`` image-slot documents for an LM of hidden size ``width`` whose token embeddings have median norm
    ``embedding_norm`` (the vectors scale with it, so they stay comparable to tokens as the LM trains)."""
    documents = [_document(rng, tokenizer, width, embedding_norm, media_token, end_of_chunk_token)
                 for _ in range(count)]
    length = max(len(ids) for ids, _, _ in documents)
    input_ids = torch.full((count, length), tokenizer.eos_token_id, dtype=torch.long)
    attention_mask = torch.zeros(count, length, dtype=torch.long)
    added = torch.zeros(count, length, width)
    for row, (ids, spans, _) in enumerate(documents):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        attention_mask[row, :len(ids)] = 1
        for start, end, vector in spans:
            added[row, start:end] = vector
    return ImageSlotBatch(input_ids, attention_mask, added, [order for _, _, order in documents])


def image_slot_loss(model: torch.nn.Module, batch: ImageSlotBatch) -> torch.Tensor:
    """Next-token cross-entropy of a causal LM on an image-slot batch, the vectors added to its input embeddings."""
    embeddings = model.get_input_embeddings()(batch.input_ids) + batch.added.to(model.dtype)  # (B, L, D)
    logits = model(inputs_embeds=embeddings, attention_mask=batch.attention_mask).logits  # (B, L, V)
    targets = batch.input_ids[:, 1:].masked_fill(batch.attention_mask[:, 1:] == 0, -100)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


def median_embedding_norm(model: torch.nn.Module) -> float:
    """The median norm of the LM's token embeddings (what an added vector is scaled against)."""
    return float(model.get_input_embeddings().weight.detach().float().norm(dim=1).median())


@torch.no_grad()
def lm_slot_recall(lm: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, *, trials: int = 80, shots: int = 5,
                   seed: int = 0, media_token: str = "<image>",
                   end_of_chunk_token: str = "<|endofchunk|>") -> dict[str, float]:
    """How often a bare causal LM names a word by an added vector: ``shots`` chunks ``<image>this is a {word}.``,
    each word's chunk with its own random vector added (half the median embedding norm, plus 30% noise), then
    ``<image>this is a`` with a fresh noisy copy of one example's vector; the right word must score highest among
    the ``shots`` words. -> ``{"slot_recall": accuracy, "chance": 1 / shots}``. Training words only, fixed seed."""
    was_training = lm.training
    lm.eval()
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    embed = lm.get_input_embeddings()
    width = embed.weight.shape[1]
    scale = 0.5 * median_embedding_norm(lm)
    media_id = tokenizer.convert_tokens_to_ids(media_token)
    end_id = tokenizer.convert_tokens_to_ids(end_of_chunk_token)

    def noisy(vector: torch.Tensor) -> torch.Tensor:
        return vector + 0.3 * scale * F.normalize(torch.randn(width, generator=generator), dim=-1)

    right = 0
    for _ in range(trials):
        words = training_words(rng, shots)
        vectors = F.normalize(torch.randn(shots, width, generator=generator), dim=-1) * scale  # (shots, D)
        answer = int(rng.integers(shots))
        ids, spans = [tokenizer.bos_token_id], []
        for word, vector in zip(words, vectors, strict=True):
            start = len(ids)
            ids += [media_id] + tokenizer(f"this is a {word}.", add_special_tokens=False)["input_ids"]
            spans.append((start, len(ids), noisy(vector)))
            ids.append(end_id)
        query_start = len(ids)
        ids += [media_id] + tokenizer("this is a", add_special_tokens=False)["input_ids"]
        query_vector = noisy(vectors[answer])
        scores = []
        for word in words:
            candidate = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
            row = torch.tensor([ids + candidate])
            added = torch.zeros(1, row.shape[1], width)
            for start, end, vector in spans:
                added[0, start:end] = vector
            added[0, query_start:] = query_vector  # the query's chunk, the candidate's tokens included
            log_probs = lm(inputs_embeds=embed(row) + added.to(embed.weight.dtype)).logits.float().log_softmax(-1)[0]
            scores.append(sum(float(log_probs[len(ids) - 1 + j, token]) for j, token in enumerate(candidate)))
        right += int(np.argmax(scores)) == answer
    lm.train(was_training)
    return {"slot_recall": right / trials, "chance": 1 / shots}
