"""Prompt building, zero-shot text-only demonstrations, random and RICES demonstrations, the feature cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from flamingo_vlm import Flamingo
from flamingo_vlm.evaluation.demos import (
    RandomDemos,
    RicesDemos,
    cached_features,
    exclusions,
    model_fingerprint,
    vision_feature_fn,
)
from flamingo_vlm.evaluation.prompts import END_OF_CHUNK, IMAGE_TOKEN, PromptTemplate, build_prompt, clean_generation
from flamingo_vlm.evaluation.specs import CaptioningTask, ClassificationTask, VQATask
from flamingo_vlm.evaluation.tasks import make_evaluator
from tests.evaluation import fixtures as fx

VQA = PromptTemplate("<image>Question: {question} Answer:", " {answer}")

# --------------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------------


def test_few_shot_prompt_layout() -> None:
    demos = [({"question": "q1?", "answer": "a1"}, "img1"), ({"question": "q2?", "answer": "a2"}, "img2")]
    text, media = build_prompt(VQA, demos, ({"question": "q3?"}, "img3"))
    assert text == ("<image>Question: q1? Answer: a1<|endofchunk|><image>Question: q2? Answer: a2<|endofchunk|>"
                    "<image>Question: q3? Answer:")
    assert media == ["img1", "img2", "img3"]


def test_zero_shot_demos_are_text_only() -> None:
    demos = [({"question": "q1?", "answer": "a1"}, "img1"), ({"question": "q2?", "answer": "a2"}, "img2")]
    text, media = build_prompt(VQA, demos, ({"question": "q3?"}, "img3"), text_only_demos=True)
    assert text == ("Question: q1? Answer: a1<|endofchunk|>Question: q2? Answer: a2<|endofchunk|>"
                    "<image>Question: q3? Answer:")
    assert media == ["img3"]
    assert text.count(IMAGE_TOKEN) == 1


def test_template_checks() -> None:
    with pytest.raises(ValueError, match="exactly one <image>"):
        PromptTemplate("Question: {question}", " {answer}").check(["question"], ["answer"], "vqa")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['caption'\]"):
        PromptTemplate("<image>{caption}", " {answer}").check(["question"], ["answer"], "vqa")
    PromptTemplate("<image>Q: {question} A:", " {answer}").check(["question"], ["answer"], "vqa")


def test_clean_generation_cuts_at_the_next_example() -> None:
    stops = VQA.stop_strings()
    assert stops == ("Question:", "Answer:")
    assert clean_generation(" blue Question: what", stops) == "blue"
    assert clean_generation("two dogs\nOutput: x", ("Output:",)) == "two dogs"
    assert clean_generation("  yes  ", stops) == "yes"


# --------------------------------------------------------------------------------------------------
# Random demonstrations
# --------------------------------------------------------------------------------------------------


def test_random_demos_are_seeded_distinct_and_never_the_query() -> None:
    exclude = [(q, (q + 1) % 10) for q in range(10)]  # e.g. the query and another question on its image
    selector = RandomDemos(10, exclude)
    for query in range(10):
        for seed in range(5):
            demos = selector.select(query, 8, seed)
            assert len(demos) == len(set(demos)) == 8
            assert not set(demos) & set(exclude[query])
            assert selector.select(query, 8, seed) == demos  # deterministic per (seed, query)
    orders = {tuple(selector.select(3, 8, seed)) for seed in range(5)}
    assert len(orders) > 1  # seeds change the demonstrations / their order
    with pytest.raises(ValueError, match="only 8 support examples"):
        selector.select(0, 9, 0)


def test_exclusions_match_media_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert exclusions([a, b], [b, a, b]) == [(1,), (0, 2)]


# --------------------------------------------------------------------------------------------------
# RICES
# --------------------------------------------------------------------------------------------------


def test_rices_picks_nearest_with_most_similar_last() -> None:
    support = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    query = torch.tensor([[0.0, 1.0]])  # cosine to support: 0, .6, 1, .8, 0
    selector = RicesDemos(query, support, exclude=[()])
    assert selector.select(0, 3, seed=0) == [1, 3, 2]  # .6, .8, then the most similar (1.0) last
    assert selector.select(0, 3, seed=7) == [1, 3, 2]  # seeds do not change RICES
    excluding = RicesDemos(query, support, exclude=[(2,)])  # the query's own example is never chosen
    assert excluding.select(0, 2, seed=0) == [1, 3]


def _copy_set(tmp_path: Path) -> tuple[Path, Path]:
    """An evaluated caption set of 3 images and a support set holding an identical copy of query 1's image."""
    root = tmp_path / "rices"
    path = fx.write_caption_jsonl(root, num_images=3)
    support = root / "support.jsonl"
    lines = []
    for i in range(5):
        fx.write_image(root / "support" / f"{i}.png", seed=900 + i)
        lines.append(f'{{"image": "support/{i}.png", "captions": ["support {i}"]}}')
    shutil.copy(root / "pairs" / "1.png", root / "support" / "copy_of_1.png")
    lines.insert(2, '{"image": "support/copy_of_1.png", "captions": ["the copy"]}')
    support.write_text("\n".join(lines) + "\n")
    return path, support


def test_rices_with_the_model_puts_an_identical_image_last(tiny_model: Flamingo, tmp_path: Path) -> None:
    path, support = _copy_set(tmp_path)
    spec = CaptioningTask(annotations=path, support_annotations=support, caption_tokenizer="python")
    evaluator = make_evaluator(tiny_model, spec, demos="rices", cache_dir=tmp_path / "cache")
    copy_index = next(i for i, e in enumerate(evaluator.support_set) if e.image.name == "copy_of_1.png")
    for shots in (1, 3):
        demos = evaluator.demo_indices(1, shots, seed=0)
        assert demos[-1] == copy_index
        text, media = evaluator.prompt(1, shots, seed=0)
        assert media[-2].name == "copy_of_1.png"  # the demonstration right before the query
    assert evaluator.demo_indices(0, 3, seed=0)[-1] != copy_index


def test_zero_shot_demos_are_random_under_rices(tiny_model: Flamingo, tmp_path: Path) -> None:
    # A query's nearest neighbours carry its answer (for a classification, its label): zero-shot's text-only
    # demonstrations must not be picked by them, so RICES sweeps and random sweeps share their zero-shot prompts.
    path, support = _copy_set(tmp_path)
    spec = CaptioningTask(annotations=path, support_annotations=support, caption_tokenizer="python")
    rices = make_evaluator(tiny_model, spec, demos="rices", cache_dir=tmp_path / "cache")
    random = make_evaluator(tiny_model, spec, demos="random")
    copy_index = next(i for i, e in enumerate(rices.support_set) if e.image.name == "copy_of_1.png")
    assert rices.demo_indices(1, 1, seed=0) == [copy_index]  # the few-shot demonstration is still retrieved
    for query in range(len(rices.eval_set)):
        for seed in (0, 1):
            assert rices.demo_indices(query, 0, seed) == random.demo_indices(query, 0, seed)
            assert rices.prompt(query, 0, seed) == random.prompt(query, 0, seed)
    assert [rices.demo_indices(1, 0, seed) for seed in range(6)] != [[copy_index, copy_index]] * 6
    assert rices.settings()["zero_shot_demos_drawn"] == "random"


def test_rices_features_are_cached_on_disk(tmp_path: Path) -> None:
    media = [fx.write_image(tmp_path / f"{i}.png", seed=i) for i in range(4)]
    calls = []

    def features(items: list) -> torch.Tensor:
        calls.append(len(items))
        return torch.eye(4)[: len(items)]

    first = cached_features(media, features, model_key="m" * 64, cache_dir=tmp_path / "cache")
    (cache_file,) = (tmp_path / "cache").glob("*.safetensors")
    assert cache_file.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    mtime = cache_file.stat().st_mtime_ns
    second = cached_features(media, features, model_key="m" * 64, cache_dir=tmp_path / "cache")
    assert calls == [4] and torch.equal(first, second)  # the second call read the file
    assert cache_file.stat().st_mtime_ns == mtime
    # Another model, or a changed image file, has another key: computed afresh.
    cached_features(media, features, model_key="n" * 64, cache_dir=tmp_path / "cache")
    fx.write_image(media[0], seed=99, size=30)
    os.utime(media[0], ns=(mtime + 10**9, mtime + 10**9))
    cached_features(media, features, model_key="m" * 64, cache_dir=tmp_path / "cache")
    assert calls == [4, 4, 4]


def test_evaluator_reuses_the_rices_cache(tiny_model: Flamingo, tmp_path: Path) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path)
    spec = VQATask(questions=questions, annotations=annotations, images=images)
    counted = []
    real = vision_feature_fn(tiny_model)

    def counting(items: list) -> torch.Tensor:
        counted.append(len(items))
        return real(items)

    for _ in range(2):
        make_evaluator(tiny_model, spec, demos="rices", cache_dir=tmp_path / "cache", feature_fn=counting)
    assert counted == [4]  # 8 questions on 4 distinct images, computed once for both evaluators
    # Without a feature function the model's encoder is used and keyed by its fingerprint.
    make_evaluator(tiny_model, spec, demos="rices", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("rices-*.safetensors"))) == 2
    assert model_fingerprint(tiny_model) == model_fingerprint(tiny_model)


def test_model_fingerprint_changes_with_vision_weights(tiny_model: Flamingo) -> None:
    before = model_fingerprint(tiny_model)
    param = next(tiny_model.vision.parameters())
    with torch.no_grad():
        param.add_(1.0)
        changed = model_fingerprint(tiny_model)
        param.sub_(1.0)
    assert changed != before


# --------------------------------------------------------------------------------------------------
# Demonstrations inside evaluators
# --------------------------------------------------------------------------------------------------


def test_vqa_demos_never_show_the_query_or_its_image(tiny_model: Flamingo, tmp_path: Path) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path, num_questions=8, num_images=4)
    evaluator = make_evaluator(tiny_model, VQATask(questions=questions, annotations=annotations, images=images))
    # 8 questions, 2 per image: a query can use at most 6 demonstrations.
    assert evaluator.max_shots(range(8)) == 6
    for query in range(8):
        for seed in range(3):
            demos = evaluator.demo_indices(query, 6, seed)
            assert query not in demos
            assert all(evaluator.support_set[d].image != evaluator.eval_set[query].image for d in demos)
    with pytest.raises(ValueError, match="7 shots need 7 demonstrations but the support set has only 6"):
        evaluator.check_shots([0, 4, 7], range(8))


def test_zero_shot_prompt_of_an_evaluator(tiny_model: Flamingo, tmp_path: Path) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path)
    evaluator = make_evaluator(tiny_model, VQATask(questions=questions, annotations=annotations, images=images))
    text, media = evaluator.prompt(3, 0, seed=1)
    assert text.count(END_OF_CHUNK) == 2 and text.count(IMAGE_TOKEN) == 1
    assert text.endswith(f"{IMAGE_TOKEN}Question: {evaluator.eval_set[3].question} Answer:")
    assert media == [evaluator.eval_set[3].image]


def test_classification_demos_and_candidates_share_the_answer_template(tiny_model: Flamingo, tmp_path: Path) -> None:
    path, names = fx.write_classification(tmp_path)
    spec = ClassificationTask(annotations=path, class_names=names, answer_template=" a photo of a {class_name}")
    evaluator = make_evaluator(tiny_model, spec)
    assert evaluator.candidate_texts == [f" a photo of a {name}" for name in fx.CLASS_NAMES]
    text, _ = evaluator.prompt(0, 2, seed=0)
    demos = evaluator.demo_indices(0, 2, seed=0)
    first = fx.CLASS_NAMES[evaluator.support_set[demos[0]].label]
    assert text.startswith(f"<image>Output: a photo of a {first}<|endofchunk|>")
