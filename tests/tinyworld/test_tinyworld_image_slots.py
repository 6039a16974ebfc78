"""Image-slot documents: chunks keyed by added vectors, their loss, the LM stage's use of them, the recall probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from flamingo_vlm.tinyworld.datasets import reserved_eval_words
from flamingo_vlm.tinyworld.image_slots import (
    image_slot_batch,
    image_slot_loss,
    lm_slot_recall,
    median_embedding_norm,
)
from flamingo_vlm.tinyworld.pretrain import LMSettings, pretrain_lm, train_tokenizer

WIDTH = 256  # wide enough that two random directions are far apart (cosine std 1/16)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    texts = ["this is a dax. look, a wug! it is a blicket.", "here is a red circle on a blue background."] * 20
    return train_tokenizer(texts, tmp_path_factory.mktemp("tok"), vocab_size=300)


def _chunks(row: torch.Tensor, tokenizer) -> list[tuple[int, int]]:
    """(start, end) of each ``<image>`` .. before-``<|endofchunk|>`` span of a token row."""
    media, end = tokenizer.convert_tokens_to_ids("<image>"), tokenizer.convert_tokens_to_ids("<|endofchunk|>")
    starts = (row == media).nonzero().flatten().tolist()
    ends = (row == end).nonzero().flatten().tolist()
    assert len(starts) == len(ends)
    return list(zip(starts, ends, strict=True))


def test_each_chunk_carries_its_category_vector_and_nothing_else_does(tokenizer) -> None:
    batch = image_slot_batch(np.random.default_rng(0), tokenizer, 12, WIDTH, embedding_norm=1.0)
    assert batch.added.shape == (*batch.input_ids.shape, WIDTH)
    same, different = [], []
    for row in range(12):
        ids, added, categories = batch.input_ids[row], batch.added[row], batch.categories[row]
        spans = _chunks(ids, tokenizer)
        assert len(spans) == len(categories) and 2 <= len(set(categories)) <= 5
        assert categories[-1] in categories[:-1]  # the document ends by naming a category again
        covered = torch.zeros(len(ids), dtype=torch.bool)
        for start, end in spans:
            assert torch.all(added[start:end] == added[start])  # one vector over the chunk's tokens
            assert 0.2 <= float(added[start].norm()) <= 1.0 * (1 + 0.6) + 1e-4
            covered[start:end] = True
        assert torch.all(added[~covered] == 0)  # BOS, <|endofchunk|> and padding get nothing
        vectors = F.normalize(torch.stack([added[start] for start, _ in spans]), dim=-1)
        for i in range(len(spans)):
            for j in range(i):
                cosine = float(vectors[i] @ vectors[j])
                (same if categories[i] == categories[j] else different).append(cosine)
    # Mentions of one category are alike (noise up to 60% of the vector), of two categories unrelated.
    assert min(same) > 0.6 and max(different) < 0.4


def test_batches_are_deterministic_and_use_training_words_only(tokenizer) -> None:
    first = image_slot_batch(np.random.default_rng(3), tokenizer, 4, WIDTH, 1.0)
    again = image_slot_batch(np.random.default_rng(3), tokenizer, 4, WIDTH, 1.0)
    assert torch.equal(first.input_ids, again.input_ids) and torch.equal(first.added, again.added)
    text = tokenizer.decode(first.input_ids.flatten())
    assert not set(text.replace(".", " ").replace("!", " ").split()) & reserved_eval_words()


def test_the_loss_reads_the_added_vectors(tokenizer) -> None:
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    batch = image_slot_batch(np.random.default_rng(0), tokenizer, 3, 32, median_embedding_norm(model))
    loss = image_slot_loss(model, batch)
    assert loss.ndim == 0 and float(loss.detach()) > 0
    batch.added.zero_()
    plain = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    targets = batch.input_ids[:, 1:].masked_fill(batch.attention_mask[:, 1:] == 0, -100)
    expected = F.cross_entropy(plain[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100)
    torch.testing.assert_close(image_slot_loss(model, batch), expected)  # no vector: the plain LM loss
    assert not torch.isclose(loss, expected)


def test_lm_stage_trains_on_image_slots_only_when_asked(tokenizer, tmp_path: Path) -> None:
    corpus = ["a red circle on a blue background.", "two green stars left of a square."] * 8

    def run(folder: str, image_slots: float) -> dict[str, torch.Tensor]:
        lm = LMSettings(width=16, layers=1, heads=2, sequence_length=16, batch_size=2, steps=3, warmup_steps=1,
                        precision="fp32", image_slots=image_slots, image_slot_batch=2)
        pretrain_lm(corpus, tokenizer, tmp_path / folder, lm, progress=False)
        return load_file(str(tmp_path / folder / "model.safetensors"))

    plain, again, slots = run("plain", 0.0), run("again", 0.0), run("slots", 0.5)
    assert all(torch.equal(plain[k], again[k]) for k in plain)
    assert any(not torch.equal(plain[k], slots[k]) for k in plain)


def test_slot_recall_probe_scores_a_bare_lm(tokenizer) -> None:
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).train()
    result = lm_slot_recall(model, tokenizer, trials=6, shots=3)
    assert set(result) == {"slot_recall", "chance"} and result["chance"] == pytest.approx(1 / 3)
    assert 0.0 <= result["slot_recall"] <= 1.0 and model.training  # left as it was found
    assert lm_slot_recall(model, tokenizer, trials=6, shots=3) == result  # fixed seed
