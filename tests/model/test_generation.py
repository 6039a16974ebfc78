"""Cached decoding equals recomputation; beams, sampling, stopping and candidate scoring."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import random_image
from tests.model.helpers import build, open_gates
from tests.tiny_backbones import FAMILIES

PROMPTS = ["<image>Output: a red circle.<|endofchunk|><image>Output:", "just text, no image:", "<image>Q: hi A:"]


def batch_inputs(model):
    images = [[random_image(1), random_image(2)], [], [random_image(3)]]
    return model.processor(PROMPTS, images=images)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("num_beams", [1, 3])
def test_cached_generation_equals_recomputation(family: str, num_beams: int, lm_dirs: dict[str, str],
                                                clip_dir: str) -> None:
    model = open_gates(build(lm_dirs[family], clip_dir), 0.7)
    inputs = batch_inputs(model)
    fast = model.generate(**inputs, max_new_tokens=6, num_beams=num_beams, stop_at_end_of_chunk=False)
    slow = model.generate(**inputs, max_new_tokens=6, num_beams=num_beams, stop_at_end_of_chunk=False,
                          use_cache=False)
    assert fast.shape == slow.shape == (3, 6)
    assert torch.equal(fast, slow)


def test_greedy_matches_argmax_of_full_forward(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = open_gates(build(lm_dirs["llama"], clip_dir), 0.7)
    inputs = model.processor(PROMPTS[0], images=[random_image(1), random_image(2)])
    generated = model.generate(**inputs, max_new_tokens=5, stop_at_end_of_chunk=False)[0]
    ids = inputs["input_ids"]
    for token in generated.tolist():
        logits = model(input_ids=ids, pixel_values=inputs["pixel_values"]).logits[0, -1]
        logits[model.media_token_id] = float("-inf")
        assert int(logits.argmax()) == token
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)


def test_batched_generation_equals_one_prompt_at_a_time(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = open_gates(build(lm_dirs["gpt2"], clip_dir), 0.7)
    inputs = batch_inputs(model)
    batched = model.generate(**inputs, max_new_tokens=5, num_beams=3, stop_at_end_of_chunk=False)
    images = [[random_image(1), random_image(2)], [], [random_image(3)]]
    for row, (prompt, media) in enumerate(zip(PROMPTS, images)):
        single = model.generate(**model.processor(prompt, images=media), max_new_tokens=5, num_beams=3,
                                stop_at_end_of_chunk=False)
        assert torch.equal(batched[row], single[0])


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = open_gates(build(lm_dirs["llama"], clip_dir), 0.7)
    inputs = model.processor(PROMPTS[0], images=[random_image(1), random_image(2)])
    greedy = model.generate(**inputs, max_new_tokens=4, stop_at_end_of_chunk=False)
    beam = model.generate(**inputs, max_new_tokens=4, num_beams=4, stop_at_end_of_chunk=False)

    def log_likelihood(tokens: torch.Tensor) -> float:
        text = model.tokenizer.decode(tokens[0])
        return float(model.score(**inputs, candidates=[text])[0, 0])

    assert model.tokenizer.decode(greedy[0]) != "" and beam.shape[1] == 4
    assert log_likelihood(beam) >= log_likelihood(greedy) - 1e-4


def test_generation_stops_at_end_of_chunk(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["gpt2"], clip_dir)
    with torch.no_grad():  # every final hidden state becomes `direction`, which only <|endofchunk|> matches
        direction = torch.randn(model.lm.config.hidden_size) * 10
        model.lm.transformer.ln_f.weight.zero_()
        model.lm.transformer.ln_f.bias.copy_(direction)
        model.new_tokens.input_rows[1] = direction * 100  # GPT-2 ties input and output rows
    inputs = model.processor(["<image>Output:", "text only"], images=[[random_image(0)], []])
    for beams in (1, 3):
        out = model.generate(**inputs, max_new_tokens=10, num_beams=beams)
        assert out.shape[1] == 1 and (out[:, 0] == model.end_of_chunk_token_id).all()
        assert model.processor.batch_decode(out) == ["", ""]
        longer = model.generate(**inputs, max_new_tokens=3, num_beams=beams, stop_at_end_of_chunk=False)
        assert longer.shape[1] == 3


def test_sampling_is_seeded_and_respects_top_k(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    inputs = model.processor("text", images=[])
    runs = [model.generate(**inputs, max_new_tokens=6, do_sample=True, top_k=1,
                           generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    greedy = model.generate(**inputs, max_new_tokens=6)
    assert torch.equal(runs[0], greedy) and torch.equal(runs[1], greedy)  # top_k=1 is greedy
    a = model.generate(**inputs, max_new_tokens=6, do_sample=True, temperature=5.0,
                       generator=torch.Generator().manual_seed(3))
    b = model.generate(**inputs, max_new_tokens=6, do_sample=True, temperature=5.0,
                       generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_generate_never_emits_image_token_and_rejects_right_padding(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    with torch.no_grad():
        model.new_tokens.output_rows[0] = 100.0  # <image> would win every step if allowed
    inputs = model.processor("text")
    assert not (model.generate(**inputs, max_new_tokens=4) == model.media_token_id).any()
    right = model.processor(["a", "a longer prompt"], padding_side="right")
    with pytest.raises(ValueError, match="pad prompts on the left"):
        model.generate(**right, max_new_tokens=2)


@pytest.mark.parametrize("family", ["llama", "opt", "gpt_neox"])
def test_score_equals_full_forward_log_likelihood(family: str, lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = open_gates(build(lm_dirs[family], clip_dir), 0.5)
    images = [[random_image(1)], [random_image(2), random_image(3)]]
    prompts = ["<image>Answer:", "<image>one<|endofchunk|><image>Answer:"]
    candidates = [" yes", " no", " a red circle"]
    inputs = model.processor(prompts, images=images)
    scores = model.score(**inputs, candidates=candidates, candidate_batch_size=2)
    assert scores.shape == (2, 3)
    for row, (prompt, media) in enumerate(zip(prompts, images)):
        for col, candidate in enumerate(candidates):
            full = model.processor(prompt + candidate, images=media)
            prompt_len = model.processor(prompt, images=media)["input_ids"].shape[1]
            with torch.no_grad():
                log_probs = model(**full).logits[0].log_softmax(-1)
            target = full["input_ids"][0]
            expected = sum(float(log_probs[t - 1, target[t]]) for t in range(prompt_len, target.shape[0]))
            assert float(scores[row, col]) == pytest.approx(expected, abs=1e-4)
    mean = model.score(**inputs, candidates=candidates, reduction="mean")
    lengths = torch.tensor([len(model.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in candidates])
    torch.testing.assert_close(mean, scores / lengths, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        model.score(**inputs, candidates=candidates, reduction="max")
