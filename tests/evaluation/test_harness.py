"""Whole evaluations of a tiny random saved model for each task, the results schema, seeds, batching."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from flamingo_vlm import Flamingo
from flamingo_vlm.evaluation import harness
from flamingo_vlm.evaluation.batching import PromptBatcher
from flamingo_vlm.evaluation.harness import evaluate, mean_std, measure_queries_per_second, select_queries
from flamingo_vlm.evaluation.prompts import END_OF_CHUNK, IMAGE_TOKEN
from flamingo_vlm.evaluation.specs import (
    CaptioningTask,
    ClassificationTask,
    RetrievalTask,
    TaskSpec,
    VideoQATask,
    VQATask,
    hateful_memes_task,
)
from flamingo_vlm.evaluation.metrics import vqa_score
from flamingo_vlm.evaluation.tasks import QUESTION_TYPE_METRIC, Evaluator, RunOutput, make_evaluator
from flamingo_vlm.model.generation import score_candidates
from tests.evaluation import fixtures as fx


def _captioning(root: Path) -> TaskSpec:
    path, images = fx.write_coco_captions(root)
    return CaptioningTask(annotations=path, images=images, name="coco", caption_tokenizer="python")


def _vqa(root: Path) -> TaskSpec:
    questions, annotations, images = fx.write_vqa(root)
    return VQATask(questions=questions, annotations=annotations, images=images, name="okvqa")


def _classification(root: Path) -> TaskSpec:
    path, names = fx.write_classification(root)
    return ClassificationTask(annotations=path, class_names=names, name="imagenet_tiny")


def _hateful(root: Path) -> TaskSpec:
    return hateful_memes_task(fx.write_hateful_memes(root))


def _video(root: Path) -> TaskSpec:
    return VideoQATask(annotations=fx.write_video_qa(root), name="msvd_qa")


def _retrieval(root: Path) -> TaskSpec:
    return RetrievalTask(annotations=fx.write_caption_jsonl(root), name="flickr_retrieval")


TASKS: dict[str, Callable[[Path], TaskSpec]] = {
    "captioning": _captioning, "vqa": _vqa, "classification": _classification, "hateful_memes": _hateful,
    "video_qa": _video, "retrieval": _retrieval,
}
EXPECTED_METRIC = {"captioning": "CIDEr", "vqa": "VQA accuracy", "classification": "top-1 accuracy",
                   "hateful_memes": "ROC-AUC", "video_qa": "top-1 accuracy", "retrieval": "mean recall"}
EXTRA_METRICS = {"captioning": {"BLEU-4", "ROUGE-L"}, "classification": {"top-5 accuracy"},
                 # accuracy per VQAv2 answer type and question type (the fixture has every one of each)
                 "vqa": set(fx.ANSWER_TYPES) | {QUESTION_TYPE_METRIC.format(t) for t in fx.QUESTION_TYPES},
                 "hateful_memes": {"accuracy"},
                 "retrieval": {f"{d} R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}}


class _Recorder:
    """Stands in for an evaluator's batcher and records every prompt and its media."""

    def __init__(self, inner: PromptBatcher) -> None:
        self.inner = inner
        self.seen: list[tuple[str, list]] = []

    def __call__(self, prompts: list[str], media: list[list]) -> dict[str, torch.Tensor]:
        self.seen.extend(zip(prompts, [list(m) for m in media], strict=True))
        return self.inner(prompts, media)


def _record_prompts(evaluator: Evaluator) -> list[tuple[str, list]]:
    recorder = _Recorder(evaluator.batcher)
    evaluator.batcher = recorder  # type: ignore[assignment]
    return recorder.seen


# --------------------------------------------------------------------------------------------------
# End to end, one test per task
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(TASKS))
def test_whole_eval_of_a_saved_tiny_model(task: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = TASKS[task](tmp_path)
    entry = evaluate(str(tiny_model_dir), spec, shots=[0, 2], seeds=2, limit=4, batch_size=3, progress=False,
                     cache_dir=tmp_path / "cache")
    json.dumps(entry)  # JSON-ready
    assert entry["task"] == spec.name and entry["metric"] == EXPECTED_METRIC[task]
    assert [row["shots"] for row in entry["results"]] == [0, 2]
    for row in entry["results"]:
        assert len(row["per_seed"]) == 2
        assert all(0.0 <= s <= 100.0 for s in row["per_seed"])
        assert row["score"] == pytest.approx(np.mean(row["per_seed"]))
        assert row["std"] == pytest.approx(np.std(row["per_seed"]))
        assert set(row.get("metrics", {})) == EXTRA_METRICS.get(task, set())
    settings = entry["settings"]
    assert settings["prompt_template"] == spec.prompt_template and settings["answer_template"] == spec.answer_template
    assert settings["demos"] == "random" and settings["limit"] == 4 and settings["batch_size"] == 3
    assert settings["num_queries"] == 4 and settings["seeds"] == [0, 1]
    assert len(settings["timings"]) == 4 and all(t["queries_per_second"] > 0 for t in settings["timings"])
    if task in ("captioning", "vqa", "video_qa"):
        assert settings["num_beams"] == 3 and settings["max_new_tokens"] == (20 if task == "captioning" else 5)
    if task == "captioning":
        assert settings["caption_tokenizer"] == "python"
    # Every media item was encoded once and then reused across queries, shots and seeds.
    assert settings["media_reused"] > 0


def test_prompts_of_a_run_zero_shot_and_few_shot(tiny_model: Flamingo, tmp_path: Path) -> None:
    evaluator = make_evaluator(tiny_model, _vqa(tmp_path), batch_size=2)
    seen = _record_prompts(evaluator)
    queries = select_queries(len(evaluator.eval_set), 4)
    evaluator.run(queries, 0, seed=0)
    assert len(seen) == 4
    for (text, media), query in zip(seen, queries, strict=True):
        assert text.count(END_OF_CHUNK) == 2  # two demonstrations ...
        assert text.count(IMAGE_TOKEN) == 1 and media == [evaluator.eval_set[query].image]  # ... text only
    seen.clear()
    evaluator.run(queries, 2, seed=0)
    for (text, media), query in zip(seen, queries, strict=True):
        assert text.count(END_OF_CHUNK) == 2 and text.count(IMAGE_TOKEN) == 3 and len(media) == 3
        assert media[-1] == evaluator.eval_set[query].image
        assert evaluator.eval_set[query].image not in media[:-1]  # never the query's own example


def test_limit_selects_the_same_queries_for_every_seed(tiny_model: Flamingo, tmp_path: Path) -> None:
    evaluator = make_evaluator(tiny_model, _classification(tmp_path), batch_size=4)
    seen = _record_prompts(evaluator)
    queries = select_queries(len(evaluator.eval_set), 3)
    assert queries == select_queries(len(evaluator.eval_set), 3)  # fixed: seed 0 permutation
    assert queries != list(range(3))
    tails = []
    for seed in range(3):
        seen.clear()
        evaluator.run(queries, 2, seed)
        tails.append([media[-1] for _, media in seen])
    assert tails[0] == tails[1] == tails[2] == [evaluator.eval_set[q].image for q in queries]


def test_mean_and_std_over_seeds(tiny_model: Flamingo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert mean_std([50.0, 60.0, 70.0]) == pytest.approx((60.0, math.sqrt(200.0 / 3.0)))
    assert mean_std([42.0]) == (42.0, 0.0)

    def fake_run(self: Evaluator, queries: Any, num_shots: int, seed: int, progress: Any = None) -> RunOutput:
        return RunOutput(score=10.0 * seed + num_shots, metrics={"other": float(seed)})

    monkeypatch.setattr(Evaluator, "run", fake_run)
    entry = evaluate(tiny_model, _classification(tmp_path), shots=[0, 4], seeds=[1, 2, 6], progress=False)
    four = entry["results"][1]
    assert four["per_seed"] == [14.0, 24.0, 64.0]
    assert four["score"] == pytest.approx(34.0)
    assert four["std"] == pytest.approx(math.sqrt(((14 - 34) ** 2 + (24 - 34) ** 2 + (64 - 34) ** 2) / 3))
    assert four["metrics"]["other"]["score"] == pytest.approx(3.0)


def test_too_many_shots_fail_before_running(tiny_model: Flamingo, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: Any, **kwargs: Any) -> RunOutput:
        raise AssertionError("ran before checking the shots")

    monkeypatch.setattr(Evaluator, "run", never)
    with pytest.raises(ValueError, match="8 shots need 8 demonstrations but the support set has only 7"):
        evaluate(tiny_model, _classification(tmp_path), shots=[0, 4, 8], seeds=1, progress=False)


def test_bad_sweep_options(tiny_model: Flamingo, tmp_path: Path) -> None:
    spec = _classification(tmp_path)
    with pytest.raises(ValueError, match="limit must be >= 1"):
        evaluate(tiny_model, spec, shots=[0], seeds=1, limit=0, progress=False)
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        evaluate(tiny_model, spec, shots=[0], seeds=0, progress=False)
    with pytest.raises(ValueError, match="demos must be 'random' or 'rices'"):
        evaluate(tiny_model, spec, shots=[0], seeds=1, demos="nearest", progress=False)  # type: ignore[arg-type]


def test_rices_sweep_records_its_mode(tiny_model: Flamingo, tmp_path: Path) -> None:
    entry = evaluate(tiny_model, _vqa(tmp_path), shots=[2], seeds=2, limit=3, demos="rices", progress=False,
                     cache_dir=tmp_path / "cache")
    assert entry["settings"]["demos"] == "rices"
    assert entry["results"][0]["std"] == 0.0  # RICES demonstrations do not depend on the seed
    assert list((tmp_path / "cache").glob("rices-*.safetensors"))


def test_karpathy_support_split(tiny_model: Flamingo, tmp_path: Path) -> None:
    path, images = fx.write_karpathy(tmp_path)
    spec = CaptioningTask(annotations=path, images=images, split="test", support_split="train",
                          caption_tokenizer="python")
    evaluator = make_evaluator(tiny_model, spec)
    assert {e.id for e in evaluator.support_set} == {"500", "501", "504", "505"}
    assert {e.id for e in evaluator.eval_set} == {"502", "503", "506", "507"}
    assert evaluator.max_shots(range(4)) == 4  # disjoint splits: nothing excluded


# --------------------------------------------------------------------------------------------------
# Metrics wiring of close-ended tasks (scores injected, so the expected values are exact)
# --------------------------------------------------------------------------------------------------


def test_retrieval_ranks_captions_per_image_and_images_per_caption(tiny_model: Flamingo, tmp_path: Path) -> None:
    evaluator = make_evaluator(tiny_model, _retrieval(tmp_path), batch_size=2)
    queries = [0, 1, 2, 3]

    def perfect(batch: list[int], num_shots: int, seed: int) -> list[np.ndarray]:
        owner = np.array(evaluator._owner)
        return [np.where(owner == queries.index(q), 0.0, -1.0) for q in batch]

    evaluator._run_batch = perfect  # type: ignore[method-assign]
    output = evaluator.run(queries, 2, seed=0)
    assert output.score == 100.0 and output.metrics["t2i R@1"] == 100.0

    def swapped(batch: list[int], num_shots: int, seed: int) -> list[np.ndarray]:
        owner = np.array(evaluator._owner)  # each image prefers the next image's captions
        return [np.where(owner == (queries.index(q) + 1) % 4, 0.0, -1.0 - 0.1 * owner) for q in batch]

    evaluator._run_batch = swapped  # type: ignore[method-assign]
    output = evaluator.run(queries, 2, seed=0)
    assert output.metrics["i2t R@1"] == 0.0 and output.metrics["i2t R@10"] == 100.0


def test_hateful_memes_auc_uses_the_yes_minus_no_margin(tiny_model: Flamingo, tmp_path: Path) -> None:
    evaluator = make_evaluator(tiny_model, _hateful(tmp_path))
    labels = [e.label for e in evaluator.eval_set]
    evaluator._run_batch = lambda batch, k, s: [np.array([0.0, 1.0 if labels[q] else -1.0]) for q in batch]  # type: ignore[method-assign]
    assert evaluator.run(list(range(8)), 2, seed=0).score == 100.0
    evaluator._run_batch = lambda batch, k, s: [np.array([1.0 if labels[q] else -1.0, 0.0]) for q in batch]  # type: ignore[method-assign]
    assert evaluator.run(list(range(8)), 2, seed=0).score == 0.0
    with pytest.raises(ValueError, match="needs both labels"):
        evaluator.run([0, 2], 2, seed=0)


# --------------------------------------------------------------------------------------------------
# Batching and cached media latents give the model's own results
# --------------------------------------------------------------------------------------------------


def test_cached_latents_match_the_processor_path(tiny_model: Flamingo, tmp_path: Path) -> None:
    images = [fx.write_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    video = tuple(fx.write_image(tmp_path / f"f{i}.png", seed=10 + i) for i in range(3))
    prompts = ["<image>Output: a red star.<|endofchunk|><image>Output:", "<image>Question: what? Answer:"]
    media = [[images[0], images[1]], [video]]
    batcher = PromptBatcher(tiny_model, cache_size=2)
    cached = batcher(prompts, media)
    reference = tiny_model.processor(prompts, images=[[str(images[0]), str(images[1])], [[str(p) for p in video]]])
    assert torch.equal(cached["input_ids"], reference["input_ids"])
    assert torch.equal(cached["attention_mask"], reference["attention_mask"])
    with torch.no_grad():
        latents = tiny_model.encode_media(reference["pixel_values"], reference["frame_mask"])
    assert torch.allclose(cached["media_latents"], latents, atol=1e-5)
    ids = tiny_model.generate(**cached, max_new_tokens=6, num_beams=3)
    assert torch.equal(ids, tiny_model.generate(**reference, max_new_tokens=6, num_beams=3))
    with torch.no_grad():
        scores = score_candidates(tiny_model, cached["input_ids"], cached["attention_mask"], None, None,
                                  candidates=[" cat", " dog"], media_latents=cached["media_latents"])
    assert torch.allclose(scores, tiny_model.score(**reference, candidates=[" cat", " dog"]), atol=1e-5)
    # A second batch with the same media runs nothing through the encoder (cache grew to fit the batch).
    encoded = batcher.encoded
    batcher(prompts, media)
    assert batcher.encoded == encoded == 3 and batcher.reused == 3


def test_close_ended_scores_do_not_depend_on_the_batch_size(tiny_model: Flamingo, tmp_path: Path) -> None:
    spec = _classification(tmp_path)
    one = make_evaluator(tiny_model, spec, batch_size=1)._run_batch
    queries = [0, 3, 5]
    batched = make_evaluator(tiny_model, spec, batch_size=3)._run_batch(queries, 2, 0)
    singles = [one([q], 2, 0)[0] for q in queries]
    np.testing.assert_allclose(np.stack(batched), np.stack(singles), atol=1e-4)


def test_prompt_ensembling_averages_orderings(tiny_model: Flamingo, tmp_path: Path) -> None:
    path, names = fx.write_classification(tmp_path)
    spec = ClassificationTask(annotations=path, class_names=names, ensembles=3)
    evaluator = make_evaluator(tiny_model, spec)
    seen = _record_prompts(evaluator)
    scores = evaluator._run_batch([0], 3, seed=0)
    assert len(seen) == 3 and len({text for text, _ in seen}) > 1  # three orderings of the same demonstrations
    assert all(sorted(map(str, m)) == sorted(map(str, seen[0][1])) for _, m in seen)
    single = make_evaluator(tiny_model, ClassificationTask(annotations=path, class_names=names))
    assert not np.allclose(scores[0], single._run_batch([0], 3, seed=0)[0])


def test_measure_queries_per_second(tiny_model: Flamingo, tmp_path: Path) -> None:
    rate = measure_queries_per_second(tiny_model, _vqa(tmp_path), shots=2, limit=4, batch_size=2)
    assert rate > 0


def test_evaluate_suite_names_the_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    results = harness.evaluate_suite(str(tiny_model_dir), [_classification(tmp_path), _hateful(tmp_path)],
                                     shots=[0], seeds=1, limit=4, progress=False)
    assert results["model"] == str(tiny_model_dir)
    assert [t["task"] for t in results["tasks"]] == ["imagenet_tiny", "hateful_memes"]
    with pytest.raises(ValueError, match="repeated"):
        harness.evaluate_suite(str(tiny_model_dir), [_hateful(tmp_path), _hateful(tmp_path)], shots=[0], seeds=1)


def test_prompts_longer_than_the_context_fail_before_running(tiny_model: Flamingo, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path, num_questions=40, num_images=40)
    spec = VQATask(questions=questions, annotations=annotations, images=images)
    monkeypatch.setattr(Evaluator, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    with pytest.raises(ValueError, match="a 30-shot prompt has .* tokens but the language model supports at most 512"):
        evaluate(tiny_model, spec, shots=[0, 30], seeds=1, limit=2, progress=False)


def test_invalid_protocol_options_fail_early(tiny_model: Flamingo, tmp_path: Path) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path)
    spec = VQATask(questions=questions, annotations=annotations, images=images, vqa_protocol="lenient")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vqa_protocol must be"):
        make_evaluator(tiny_model, spec)
    with pytest.raises(ValueError, match="must contain exactly one <image>"):
        make_evaluator(tiny_model, VQATask(questions=questions, annotations=annotations, images=images,
                                           prompt_template="Question: {question} Answer:"))


@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java for pycocoevalcap's PTB tokenizer")
def test_captioning_records_the_ptb_tokenizer_by_default(tiny_model: Flamingo, tmp_path: Path) -> None:
    path, images = fx.write_coco_captions(tmp_path)
    entry = evaluate(tiny_model, CaptioningTask(annotations=path, images=images), shots=[0], seeds=1, limit=2,
                     progress=False)
    assert entry["settings"]["caption_tokenizer"] == "ptb"


def test_vqa_reports_accuracy_per_answer_type_and_question_type(tiny_model: Flamingo, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each answer type's and each question type's number is the VQA accuracy of its own questions (so each
    breakdown's question-weighted mean is the headline score), answer types first; a file where one question
    lacks a type gives no numbers for that breakdown rather than wrong ones."""
    spec = _vqa(tmp_path)
    evaluator = make_evaluator(tiny_model, spec, batch_size=4)
    queries = list(range(len(evaluator.eval_set)))
    examples = [evaluator.eval_set[q] for q in queries]
    # Right answers to the "other" questions only: "other" 100%, the two other types 0%.
    answers = {q: e.demo_answer if e.answer_type == "other" else "wrong" for q, e in zip(queries, examples)}
    monkeypatch.setattr(evaluator, "_run_batch", lambda batch, shots, seed: [answers[q] for q in batch])
    output = evaluator.run(queries, 0, seed=0)
    question_metrics = [QUESTION_TYPE_METRIC.format(t) for t in sorted(fx.QUESTION_TYPES)]
    assert list(output.metrics) == sorted(fx.ANSWER_TYPES) + question_metrics
    assert output.metrics["yes/no"] == output.metrics["number"] == 0.0
    for name, type_of in (("{}", lambda e: e.answer_type), (QUESTION_TYPE_METRIC, lambda e: e.question_type)):
        counts = Counter(type_of(e) for e in examples)
        assert len(counts) > 1 and min(counts.values()) > 0
        for kind in counts:
            mine = [q for q, e in zip(queries, examples) if type_of(e) == kind]
            assert output.metrics[name.format(kind)] == pytest.approx(
                vqa_score([answers[q] for q in mine], [examples[q].answers for q in mine]))
        weighted = sum(output.metrics[name.format(k)] * n for k, n in counts.items()) / len(queries)
        assert output.score == pytest.approx(weighted)
    # The question types split the "other" questions unevenly, so their numbers differ from each other.
    assert len({output.metrics[m] for m in question_metrics}) == len(question_metrics)

    for field, dropped in (("answer_type", set(fx.ANSWER_TYPES)), ("question_type", set(question_metrics))):
        content = json.loads(Path(spec.annotations).read_text())
        saved = content["annotations"][0].pop(field)
        Path(spec.annotations).write_text(json.dumps(content))
        untyped = make_evaluator(tiny_model, spec, batch_size=4)
        monkeypatch.setattr(untyped, "_run_batch", lambda batch, shots, seed: [answers[q] for q in batch])
        assert set(untyped.run(queries, 0, seed=0).metrics) == set(output.metrics) - dropped
        content["annotations"][0][field] = saved
        Path(spec.annotations).write_text(json.dumps(content))



def test_video_qa_reports_accuracy_per_question_type(tiny_model: Flamingo, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each question type's number is the exact-match accuracy of its own questions (their question-weighted mean is
    the headline score); a file where one question lacks a type gives no per-type numbers rather than wrong ones."""
    path = fx.write_video_qa(tmp_path, num_videos=6)
    entries = json.loads(path.read_text())
    types = ["move", "move", "colour", "colour", "colour", "appear"]
    for entry, kind in zip(entries, types, strict=True):
        entry["question_type"] = kind
    path.write_text(json.dumps(entries))
    evaluator = make_evaluator(tiny_model, VideoQATask(annotations=path), batch_size=4)
    queries = list(range(len(evaluator.eval_set)))
    # Right on the first "move" and on every "colour" question, wrong elsewhere.
    right = {0, 2, 3, 4}
    answers = {q: evaluator.eval_set[q].answers[0] if q in right else "wrong" for q in queries}
    monkeypatch.setattr(evaluator, "_run_batch", lambda batch, shots, seed: [answers[q] for q in batch])
    output = evaluator.run(queries, 0, seed=0)
    assert output.metrics == {QUESTION_TYPE_METRIC.format("appear"): 0.0, QUESTION_TYPE_METRIC.format("colour"): 100.0,
                              QUESTION_TYPE_METRIC.format("move"): 50.0}
    assert output.score == pytest.approx(100.0 * len(right) / len(queries))

    del entries[5]["question_type"]
    path.write_text(json.dumps(entries))
    untyped = make_evaluator(tiny_model, VideoQATask(annotations=path), batch_size=4)
    monkeypatch.setattr(untyped, "_run_batch", lambda batch, shots, seed: [answers[q] for q in batch])
    assert untyped.run(queries, 0, seed=0).metrics == {}

def test_top5_accuracy_only_with_more_than_five_classes(tiny_model: Flamingo, tmp_path: Path) -> None:
    """Of five classes every label is in the top five: a top-5 figure would say 100% about nothing."""
    path, names = fx.write_classification(tmp_path)
    queries = list(range(4))
    assert "top-5 accuracy" in make_evaluator(tiny_model, ClassificationTask(annotations=path, class_names=names,
                                                                             name="six")).run(queries, 0, 0).metrics
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("\n".join(json.dumps({**line, "label": int(i % 5)}) for i, line in enumerate(lines)) + "\n")
    names.write_text("\n".join(fx.CLASS_NAMES[:5]) + "\n")
    five = make_evaluator(tiny_model, ClassificationTask(annotations=path, class_names=names, name="five"))
    assert five.run(queries, 0, 0).metrics == {}


def test_a_long_prompt_behind_the_first_queries_still_fails_before_running(tiny_model: Flamingo, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Under RICES one query's nearest support example can carry an answer long enough to overflow the context: the
    # sweep must refuse before it starts, whichever query that is. Each query's nearest is a copy of its image,
    # and only the last query's copy has a long caption.
    path = fx.write_caption_jsonl(tmp_path, num_images=12)
    (tmp_path / "support").mkdir()
    lines = []
    for i in range(12):
        shutil.copy(tmp_path / "pairs" / f"{i}.png", tmp_path / "support" / f"{i}.png")
        caption = "word " * 600 if i == 11 else f"support {i}"
        lines.append(f'{{"image": "support/{i}.png", "captions": ["{caption}"]}}')
    support = tmp_path / "support.jsonl"
    support.write_text("\n".join(lines) + "\n")
    spec = CaptioningTask(annotations=path, support_annotations=support, caption_tokenizer="python")
    monkeypatch.setattr(Evaluator, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    with pytest.raises(ValueError, match=r"a 1-shot prompt has \d+ tokens but the language model supports at most "
                                         r"512 \(query 11, seed 0; 1 of 12 prompts are too long\)"):
        evaluate(tiny_model, spec, shots=[0, 1], seeds=1, demos="rices", progress=False,
                 cache_dir=tmp_path / "cache")


def test_load_model_casts_every_weight_to_the_asked_dtype_and_records_it(tiny_model_dir: Path) -> None:
    bf16 = harness.load_model(str(tiny_model_dir), dtype="bf16")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16} and not bf16.training
    assert harness.weights_dtype(bf16) == "bf16"
    fp32 = harness.load_model(str(tiny_model_dir), dtype="fp32")
    assert harness.weights_dtype(fp32) == "fp32"
    assert harness.weights_dtype(harness.load_model(bf16, dtype="fp32")) == "fp32"  # a given model is cast too
    # None leaves a given model as it is.
    assert harness.weights_dtype(harness.load_model(fp32.to(torch.bfloat16))) == "bf16"
    # auto: what the precision probe picks on this CPU (bf16 unless its bf16 matrix products are clearly slower).
    from flamingo_vlm.training.cpu_precision import resolve_precision

    assert harness.weights_dtype(harness.load_model(str(tiny_model_dir), dtype="auto")) == resolve_precision("auto")
    with pytest.raises(ValueError, match=r"dtype must be one of \['fp32', 'bf16', 'auto'\], got 'fp16'"):
        harness.load_model(str(tiny_model_dir), dtype="fp16")


def test_a_bf16_model_scores_what_the_fp32_one_does(tiny_model_dir: Path, tmp_path: Path) -> None:
    """bf16 weights run the whole evaluation path (media in the weights' dtype, cached keys and values, beam search,
    candidate ranking) and agree with fp32 where the model is not torn between answers."""
    fp32 = harness.load_model(str(tiny_model_dir), dtype="fp32")
    bf16 = harness.load_model(str(tiny_model_dir), dtype="bf16")
    spec = _captioning(tmp_path)
    runs = [make_evaluator(model, spec).run(select_queries(6, None), 2, 0) for model in (fp32, bf16)]
    assert len(runs[1].predictions) == 6 and all(isinstance(p, str) for p in runs[1].predictions)
    assert all(math.isfinite(run.score) for run in runs)
    # Next-token log-probabilities of one prompt: the same distribution to bf16's precision.
    inputs = fp32.processor("<image>a picture of", images=[str(fx.write_image(tmp_path / "query.png", seed=7))])
    with torch.inference_mode():
        logp = [model(**inputs).logits[0, -1].float().log_softmax(-1) for model in (fp32, bf16)]
    assert (logp[0] - logp[1]).abs().max() < 0.05  # 0.004 measured
