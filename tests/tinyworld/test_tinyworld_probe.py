"""Linear probes of the vision encoder's features (what the frozen encoder can tell the LM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flamingo_vlm.model.flamingo import FlamingoOutput
from flamingo_vlm.tinyworld.datasets import reserved_eval_words
from flamingo_vlm.tinyworld.evalsets import build_eval_sets
from flamingo_vlm.tinyworld.scene import Colour, Shape
from flamingo_vlm.tinyworld.probe import (
    ATTRIBUTES,
    IMAGE_CONDITIONS,
    READ_ATTRIBUTES,
    RECALL_FORMS,
    SCENE_QA_KINDS,
    _linear_probe,
    attribute_reading,
    binding_summary,
    copy_binding,
    copy_binding_plan,
    copying_prompts,
    copying_summary,
    image_reliance,
    in_context_copying,
    in_context_recall,
    keeping_summary,
    motion_keeping,
    motion_summary,
    lm_candidate_scores,
    lm_recall,
    lm_scene_qa,
    position_keeping,
    probe_summary,
    probe_vision,
    existence_check,
    existence_check_plan,
    existence_check_summary,
    question_binding,
    question_binding_plan,
    question_binding_summary,
    reading_summary,
    recall_prompts,
    recall_summary,
    reliance_summary,
    scene_qa_prompts,
    scene_qa_summary,
    time_order,
    time_order_plan,
    time_order_summary,
)
from tests.model.helpers import build


def test_linear_probe_separates_separable_classes_and_not_random_labels() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 3
    labels = torch.randint(0, 4, (400,), generator=g)
    points = centres[labels] + torch.randn(400, 16, generator=g)
    predicted = _linear_probe(points[:300], labels[:300], points[300:], 4)
    assert (predicted == labels[300:]).float().mean() > 0.95
    shuffled = labels[torch.randperm(400, generator=g)]
    predicted = _linear_probe(points[:300], shuffled[:300], points[300:], 4)
    assert (predicted == shuffled[300:]).float().mean() < 0.45  # chance is 0.25


@pytest.fixture(scope="module")
def shapes_folders(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("world")
    build_eval_sets(root, seed=3, image_size=32, progress=False, num_captioning=2, num_vqa_images=2,
                    num_video_qa=2, num_novel_words=2, num_shapes=40, num_support=2)
    return [root / "shapes" / "eval", root / "shapes" / "support"]


def test_probe_vision_reports_every_attribute(lm_dirs: dict[str, str], clip_dir: str,
                                              shapes_folders: list[Path]) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    results = probe_vision(model, shapes_folders)
    assert tuple(results) == ATTRIBUTES
    for name, result in results.items():
        assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 < result["majority"] <= 1.0
    assert results["horizontal third"]["classes"] <= 3 and results["shape"]["classes"] <= 8
    assert "colour" in probe_summary(results) and "majority class" in probe_summary(results)


def test_probe_vision_names_what_is_missing(lm_dirs: dict[str, str], clip_dir: str, tmp_path: Path) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    with pytest.raises(ValueError, match="records.jsonl is missing"):
        probe_vision(model, [tmp_path])
    (tmp_path / "records.jsonl").write_text("")
    with pytest.raises(ValueError, match="at least 20 images"):
        probe_vision(model, [tmp_path])


def test_attribute_reading_is_at_the_shuffled_level_while_the_gates_are_closed(
        lm_dirs: dict[str, str], clip_dir: str, shapes_folders: list[Path]) -> None:
    model = build(lm_dirs["llama"], clip_dir)  # fresh gates are 0: the images cannot matter
    results = attribute_reading(model, shapes_folders, limit=12, batch_size=40)
    assert tuple(results) == READ_ATTRIBUTES
    assert results["colour"]["chance"] == pytest.approx(1 / 12) and results["shape"]["chance"] == pytest.approx(1 / 8)
    for result in results.values():
        assert result["right"] == result["shuffled"]
    assert "with another image" in reading_summary(results)


def word_oracle(model, knows):
    """A stand-in forward: certain of the last word's tokens where ``knows(text, pixels, word)`` (``pixels`` the
    row's image as bytes), uniform everywhere else (causal: what comes before the word cannot know it)."""
    tokenizer = model.processor.tokenizer
    vocab = model(input_ids=torch.tensor([[1]])).logits.shape[-1]

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                **_: object) -> FlamingoOutput:
        logits = torch.zeros(*input_ids.shape, vocab)
        for b, row in enumerate(input_ids.tolist()):
            length = int(attention_mask[b].sum())
            text = tokenizer.decode(row[:length])
            word = text.split()[-1]
            if knows(text, pixel_values[b].flatten().numpy().tobytes(), word):
                word_tokens = len(tokenizer(" " + word, add_special_tokens=False)["input_ids"])
                for t in range(length - 1 - word_tokens, length - 1):
                    logits[b, t, row[t + 1]] = 50.0
        return FlamingoOutput(logits=logits, loss=None)

    return forward


def test_attribute_reading_scores_a_model_that_reads_its_images_and_not_another_images(
        lm_dirs: dict[str, str], clip_dir: str, shapes_folders: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from PIL import Image

    model = build(lm_dirs["llama"], clip_dir)
    truth = {}  # the pixels of each image -> its object's colour and shape
    for folder in shapes_folders:
        for line in (folder / "records.jsonl").read_text().splitlines():
            record = json.loads(line)
            pixels = model.processor("<image>", images=[Image.open(folder / record["image"]).convert("RGB")])
            obj = record["scene"]["objects"][0]
            truth[pixels["pixel_values"].flatten().numpy().tobytes()] = {obj["colour"], obj["shape"]}
    monkeypatch.setattr(model, "forward", word_oracle(model, lambda text, pixels, word: word in truth[pixels]))
    results = attribute_reading(model, shapes_folders, limit=16, batch_size=50)
    assert results["colour"]["right"] == 1.0 and results["shape"]["right"] == 1.0
    assert results["shape"]["shuffled"] == 0.0  # the set cycles through the shapes: a neighbour's is never right
    assert results["colour"]["shuffled"] < 0.5


@pytest.fixture(scope="module")
def captions_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("captions")
    build_eval_sets(root, seed=4, image_size=32, progress=False, num_captioning=5, num_vqa_images=2,
                    num_video_qa=2, num_novel_words=2, num_shapes=2, num_support=2)
    return root / "coco" / "eval" / "captions.json"


def test_image_reliance_is_flat_while_the_gates_are_closed_and_not_once_open(
        lm_dirs: dict[str, str], clip_dir: str, captions_file: Path) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    closed = image_reliance(model, captions_file, batch_size=3)  # gates start at 0: the images cannot matter
    assert set(closed) == set(IMAGE_CONDITIONS) and all(value > 0 for value in closed.values())
    assert closed["right"] == pytest.approx(closed["shuffled"], abs=1e-5)
    assert closed["right"] == pytest.approx(closed["blank"], abs=1e-5)
    with torch.no_grad():
        for block in model.cross_attn_blocks():
            block.attn_gate.fill_(1.0)
    opened = image_reliance(model, captions_file, batch_size=3)
    assert opened["right"] != pytest.approx(opened["shuffled"], abs=1e-4)
    assert opened["right"] != pytest.approx(opened["blank"], abs=1e-4)
    assert "shuffled across the batch" in reliance_summary(opened)


def test_image_reliance_needs_two_images(lm_dirs: dict[str, str], clip_dir: str, captions_file: Path) -> None:
    with pytest.raises(ValueError, match="at least 2 captioned images"):
        image_reliance(build(lm_dirs["llama"], clip_dir), captions_file, limit=1)


def test_copying_prompts_say_the_same_reserved_words_twice(lm_dirs: dict[str, str], clip_dir: str) -> None:
    tokenizer = build(lm_dirs["llama"], clip_dir).processor.tokenizer
    ids, first, repeated = copying_prompts(tokenizer, runs=6, words_per_run=3, seed=1)
    assert ids.shape[0] == 6 and first.shape == repeated.shape == ids.shape
    assert not (first & repeated).any() and int(first[0].sum()) == int(repeated[0].sum()) > 0
    for row, f, r in zip(ids, first, repeated, strict=True):
        assert torch.equal(row[f], row[r])  # the scored tokens of the repeat are those of the first saying
        split = row.tolist().index(tokenizer.convert_tokens_to_ids("<|endofchunk|>"))
        said, again = tokenizer.decode(row[1:split]).split(), tokenizer.decode(row[split + 1:]).split()
        assert len(said) == 3 and said == again and set(said) <= reserved_eval_words()


def test_in_context_copying_tells_a_copying_lm_from_one_that_cannot(
        lm_dirs: dict[str, str], clip_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    fresh = in_context_copying(model, runs=8, words_per_run=3)
    assert fresh["first"] > 1.0 and abs(fresh["first"] - fresh["repeated"]) < 0.5  # a random LM copies nothing

    vocab = model(input_ids=torch.tensor([[model.processor.end_of_chunk_token_id]])).logits.shape[-1]

    end_of_chunk = model.processor.end_of_chunk_token_id

    def copying_oracle(input_ids: torch.Tensor, **_: object) -> FlamingoOutput:
        """A perfect copier: after the row's first <|endofchunk|>, predicts the token said one run earlier."""
        logits = torch.zeros(*input_ids.shape, vocab)  # uniform before the repeat
        for b, row in enumerate(input_ids.tolist()):
            period = row.index(end_of_chunk)
            for t in range(period, len(row) - 1):
                logits[b, t, row[t + 1 - period]] = 50.0
        return FlamingoOutput(logits=logits, loss=None)

    monkeypatch.setattr(model, "forward", copying_oracle)
    copied = in_context_copying(model, runs=8, words_per_run=3)
    assert copied["repeated"] < 0.01 and copied["first"] > 1.0
    assert "repeated 0.00" in copying_summary(copied)


def test_recall_prompts_ask_again_one_key_whose_value_only_its_pair_gives() -> None:
    forms = recall_prompts(trials=40, pairs=3, seed=1, end_of_chunk_token="<E>")
    assert forms == recall_prompts(trials=40, pairs=3, seed=1, end_of_chunk_token="<E>")
    assert forms != recall_prompts(trials=40, pairs=3, seed=2, end_of_chunk_token="<E>")
    assert set(forms) == {"adjacent", "key_value", "described"}
    for form, rows in forms.items():
        assert len(rows) == 40 and len({answer for _, _, answer in rows}) == 3  # every position gets asked
        for prompt, values, answer in rows:
            *pairs, query = prompt.split("<E>")
            assert len(pairs) == 3 and len(set(values)) == 3 and set(values) <= reserved_eval_words()
            keys = [pair.rsplit(" ", 1)[0] for pair in pairs]  # "key", "key:" or "a red star. this is a"
            assert len(set(keys)) == 3 and query == keys[answer]  # the query is one pair's key, said again
            assert [pair.rsplit(" ", 1)[1].rstrip(".") for pair in pairs] == values
            if form == "key_value":
                assert all(key.endswith(":") for key in keys)
            if form == "adjacent":
                assert all(" " not in key and ":" not in key for key in keys)
            if form == "described":
                assert query.endswith(" this is a") and query.split(" ")[2].rstrip(".") in {str(s) for s in Shape}
    with pytest.raises(ValueError, match="pairs >= 2"):
        recall_prompts(pairs=1)
    with pytest.raises(ValueError, match="shapes to describe"):
        recall_prompts(pairs=len(Shape) + 1)


def test_in_context_recall_is_perfect_for_a_model_that_recalls_by_key(
        lm_dirs: dict[str, str], clip_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An oracle that answers with the value said after the query's key scores 1 on both forms; one that always
    answers the first pair's value scores how often the first pair is asked; a tiny random LM runs through."""
    from flamingo_vlm.model import generation

    model = build(lm_dirs["llama"], clip_dir)
    fresh = in_context_recall(model, trials=4, pairs=2)
    assert set(fresh) == {"adjacent", "key_value", "described", "chance"} and fresh["chance"] == 0.5
    assert all(fresh[form] * 4 == round(fresh[form] * 4) for form in RECALL_FORMS)  # counts of trials
    end_of_chunk = model.config.end_of_chunk_token
    blind = {"on": False}

    def oracle(_: object, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None,
               frame_mask: torch.Tensor | None, *, candidates: list[str], **__: object) -> torch.Tensor:
        assert pixel_values is None  # text only
        tokenizer = model.processor.tokenizer
        text = tokenizer.decode(input_ids[0], skip_special_tokens=False).removeprefix(tokenizer.bos_token or "")
        *pairs, query = text.split(end_of_chunk)
        said = [pair.rsplit(" ", 1) for pair in pairs]
        answer = said[0][1] if blind["on"] else next(value for key, value in said if key == query)
        return torch.tensor([[10.0 if c.strip() == answer.rstrip(".") else 0.0 for c in candidates]])

    monkeypatch.setattr(generation, "score_candidates", oracle)
    assert in_context_recall(model, trials=12, pairs=3) == {**dict.fromkeys(RECALL_FORMS, 1.0), "chance": 1 / 3}
    blind["on"] = True
    forms = recall_prompts(trials=12, pairs=3, end_of_chunk_token=end_of_chunk)
    expected = {form: sum(answer == 0 for _, _, answer in rows) / 12 for form, rows in forms.items()}
    scored = in_context_recall(model, trials=12, pairs=3)
    for form in RECALL_FORMS:
        assert scored[form] == pytest.approx(expected[form]) and expected[form] < 1
    assert recall_summary(scored, 3).endswith("(chance 33%), 3 pairs")


def test_copy_binding_plan_asks_again_one_of_the_shown_images() -> None:
    labels = ["dax", "wug", "fep", "dax", "wug", "fep", "dax"]
    plan = copy_binding_plan(labels, shots=4, trials=50, seed=1)
    assert len(plan) == 50 and plan == copy_binding_plan(labels, shots=4, trials=50, seed=1)
    assert plan != copy_binding_plan(labels, shots=4, trials=50, seed=2)
    for examples, asked in plan:
        assert len(set(examples)) == 4 and asked in examples and all(0 <= i < len(labels) for i in examples)
    assert len({asked for _, asked in plan}) > 3  # not always the same image
    with pytest.raises(ValueError, match="only 7 labelled images"):
        copy_binding_plan(labels, shots=8, trials=1)
    with pytest.raises(ValueError, match="at least two words"):
        copy_binding_plan(["dax"] * 5, shots=2, trials=1)
    with pytest.raises(ValueError, match="shots >= 1"):
        copy_binding_plan(labels, shots=0, trials=1)


def _novel_word_support(root: Path, seed: int) -> tuple[Path, Path, list[str]]:
    """A 12-image novel-word support set: its JSONL, its class-name file and its labels in file order."""
    import json

    build_eval_sets(root, seed=seed, image_size=32, progress=False, num_captioning=2, num_vqa_images=2,
                    num_video_qa=2, num_novel_words=2, num_shapes=2, num_support=12)
    annotations = root / "novel_words" / "support" / "novel_words.jsonl"
    labels = [json.loads(line)["label"] for line in annotations.read_text().splitlines()]
    return annotations, root / "novel_words" / "support" / "novel_words_classes.json", labels


def test_copy_binding_scores_the_plan(lm_dirs: dict[str, str], clip_dir: str, tmp_path: Path) -> None:
    annotations, classes, labels = _novel_word_support(tmp_path, seed=5)
    model = build(lm_dirs["llama"], clip_dir)
    results = copy_binding(model, annotations, classes, shots=3, trials=6, seed=0)
    plan = copy_binding_plan(labels, shots=3, trials=6, seed=0)
    assert results["shown"] == pytest.approx(sum(1 / len({labels[i] for i in ex}) for ex, _ in plan) / 6)
    assert results["copy"] * 6 == pytest.approx(round(results["copy"] * 6))  # a count of trials
    assert 0.0 <= results["copy"] <= 1.0
    assert copy_binding(model, annotations, classes, shots=1, trials=2)["shown"] == 1.0  # one example: one word shown
    assert "uniformly" in binding_summary(results, 3)


def test_copy_binding_is_perfect_for_a_model_that_matches_images(lm_dirs: dict[str, str], clip_dir: str,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An oracle that answers with the word shown with the query's identical image scores 1; one that always
    answers the first example's word scores how often that is the asked image's word."""
    import re

    from flamingo_vlm.model import generation

    annotations, classes, labels = _novel_word_support(tmp_path, seed=6)
    model = build(lm_dirs["llama"], clip_dir)
    first_word = {"blind": False}

    def oracle(_: object, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
               frame_mask: torch.Tensor, *, candidates: list[str], **__: object) -> torch.Tensor:
        shown = re.findall(r"Output: (\S+?)<\|endofchunk\|>", model.processor.tokenizer.decode(input_ids[0]))
        same = [i for i in range(len(shown)) if torch.equal(pixel_values[i], pixel_values[-1])]
        answer = shown[0] if first_word["blind"] else shown[same[0]]
        return torch.tensor([[10.0 if c == " " + answer else 0.0 for c in candidates]])

    monkeypatch.setattr(generation, "score_candidates", oracle)
    assert copy_binding(model, annotations, classes, shots=4, trials=10)["copy"] == 1.0
    first_word["blind"] = True
    plan = copy_binding_plan(labels, shots=4, trials=10)
    expected = sum(labels[examples[0]] == labels[asked] for examples, asked in plan) / 10
    assert copy_binding(model, annotations, classes, shots=4, trials=10)["copy"] == pytest.approx(expected) and expected < 1


def test_lm_candidate_scores_match_scoring_each_candidate_alone(lm_dirs: dict[str, str]) -> None:
    """Candidates of different lengths share one right-padded batch; each score must equal the summed
    log-probabilities of that candidate's tokens computed on its own, unpadded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(lm_dirs["llama"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(lm_dirs["llama"])
    prompt, candidates = "a red star. this is a", [" dax", " blicket wug", " z"]
    scores = lm_candidate_scores(lm, tokenizer, prompt, candidates)
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    prompt_ids = bos + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    for score, candidate in zip(scores, candidates, strict=True):
        ids = tokenizer(candidate, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            log_probs = lm(input_ids=torch.tensor([prompt_ids + ids])).logits[0].float().log_softmax(-1)
        alone = sum(float(log_probs[len(prompt_ids) - 1 + i, token]) for i, token in enumerate(ids))
        assert float(score) == pytest.approx(alone, abs=1e-4)
    with pytest.raises(ValueError, match="non-empty"):
        lm_candidate_scores(lm, tokenizer, prompt, [" dax", ""])


def test_lm_recall_asks_the_bare_lm_the_recall_prompts(lm_dirs: dict[str, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny random LM runs through (accuracies are counts of trials); an oracle LM that answers with the value
    said after the query's key scores 1 on every form."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flamingo_vlm.tinyworld import probe

    lm = AutoModelForCausalLM.from_pretrained(lm_dirs["llama"])
    tokenizer = AutoTokenizer.from_pretrained(lm_dirs["llama"])
    fresh = lm_recall(lm, tokenizer, trials=4, pairs=2, end_of_chunk_token="<E>")
    assert set(fresh) == {*RECALL_FORMS, "chance"} and fresh["chance"] == 0.5
    assert all(fresh[form] * 4 == round(fresh[form] * 4) for form in RECALL_FORMS)

    def oracle(_: object, __: object, prompt: str, candidates: list[str]) -> torch.Tensor:
        *pairs, query = prompt.split("<E>")
        said = [pair.rsplit(" ", 1) for pair in pairs]
        answer = next(value for key, value in said if key == query).rstrip(".")
        return torch.tensor([10.0 if c.strip() == answer else 0.0 for c in candidates])

    monkeypatch.setattr(probe, "lm_candidate_scores", oracle)
    assert lm_recall(lm, tokenizer, trials=12, pairs=3, end_of_chunk_token="<E>") == {
        **dict.fromkeys(RECALL_FORMS, 1.0), "chance": 1 / 3}


def _told(chunk: str) -> tuple[str, str]:
    """A scene_qa chunk's description and its question: ("scene: ... .", "what shape is ...?")."""
    scene, rest = chunk.split(" Question: ")
    return scene, rest.split(" Answer:")[0]


def _answer_from_words(scene: str, asked: str, kind: str) -> str | None:
    """What the description says, for the questions whose answer a word match finds: the shape named right after
    the one colour word a shape question mentions, or the colour named right before the one shape word a colour
    question mentions; None when the question names neither (e.g. by size)."""
    words = scene.lower().replace(",", " ").replace(".", " ").split()
    colours, shapes = {str(c) for c in Colour}, {str(s) for s in Shape}
    key = colours if kind == "shape" else shapes
    named = [w for w in asked.lower().rstrip("?").split() if w in key]
    if len(named) != 1:
        return None
    at = [i for i, w in enumerate(words) if w == named[0]]
    said = {words[i + 1] for i in at if i + 1 < len(words)} if kind == "shape" else {words[i - 1] for i in at if i}
    said &= shapes if kind == "shape" else colours
    return said.pop() if len(said) == 1 else None


def _exists_checks(scene: str, asked: str, said: str) -> bool | None:
    """For "is there a star?" (a shape, no colour): whether the description names that shape iff the answer is
    yes; None for the questions this word match cannot check."""
    words = {w.rstrip("s") for w in scene.lower().replace(",", " ").replace(".", " ").split()}
    named = [w.rstrip("s") for w in asked.lower().rstrip("?").split()]
    shapes = [w for w in named if w in {str(s) for s in Shape}]
    if len(shapes) != 1 or any(w in {str(c) for c in Colour} for w in named):
        return None
    return (shapes[0] in words) == (said == "yes")


def test_scene_qa_prompts_ask_what_the_described_scene_answers() -> None:
    """Deterministic by seed; every prompt is ``examples`` answered chunks then an open one, all of one kind, in the
    evaluation's format; the right answer is among the candidates and, where a word match can check it, is what
    the description says; the examples' answers are right too; every candidate answer of a yes/no kind is asked."""
    forms = scene_qa_prompts(trials=30, examples=2, seed=3, end_of_chunk_token="<E>")
    assert forms == scene_qa_prompts(trials=30, examples=2, seed=3, end_of_chunk_token="<E>")
    assert forms != scene_qa_prompts(trials=30, examples=2, seed=4, end_of_chunk_token="<E>")
    assert tuple(forms) == SCENE_QA_KINDS
    checked = 0
    for kind, rows in forms.items():
        assert len(rows) == 30
        for prompt, answers, answer in rows:
            *shown, query = prompt.split("<E>")
            assert len(shown) == 2 and query.startswith("scene: ") and query.endswith(" Answer:")
            for chunk in shown:
                said = chunk.rsplit(" Answer: ", 1)[1]
                assert said in answers
                scene, asked = _told(chunk)
                truth = _answer_from_words(scene, asked, kind) if kind in ("colour", "shape") else None
                assert truth in (None, said)
            scene, asked = _told(query)
            truth = _answer_from_words(scene, asked, kind) if kind in ("colour", "shape") else None
            assert truth in (None, answers[answer])
            checked += truth is not None
            if kind == "exists":
                assert answers == ["yes", "no"]
                matched = _exists_checks(scene, asked, answers[answer])
                assert matched in (None, True), (scene, asked, answers[answer])
                checked += matched is not None
        if kind == "exists":
            assert {answer for _, _, answer in rows} == {0, 1}
    assert checked >= 30  # the word-match checks applied, not skipped
    heldout = scene_qa_prompts(trials=30, seed=3, split="heldout", end_of_chunk_token="<E>")
    assert [row[0].split("<E>")[-1] for row in heldout["shape"]] != [row[0].split("<E>")[-1] for row in forms["shape"]]
    with pytest.raises(ValueError, match="trials >= 1"):
        scene_qa_prompts(trials=0)


def test_lm_scene_qa_scores_what_the_lm_ranks_first(lm_dirs: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny random LM runs through (shares are counts of trials); an LM that always ranks the right answer first
    scores 1; one that always says the first candidate scores how often that is right and says one answer 100%."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flamingo_vlm.tinyworld import probe

    lm = AutoModelForCausalLM.from_pretrained(lm_dirs["llama"])
    tokenizer = AutoTokenizer.from_pretrained(lm_dirs["llama"])
    fresh = lm_scene_qa(lm, tokenizer, trials=3, end_of_chunk_token="<E>")
    assert tuple(fresh) == SCENE_QA_KINDS
    for r in fresh.values():
        assert set(r) == {"accuracy", "majority", "said_most", "questions"} and r["questions"] == 3
        assert all(r[k] * 3 == round(r[k] * 3) for k in ("accuracy", "majority", "said_most"))
        assert r["majority"] >= 1 / 3 and r["said_most"] >= 1 / 3
    forms = scene_qa_prompts(trials=12, end_of_chunk_token="<E>")
    truth = {prompt: answers[answer] for rows in forms.values() for prompt, answers, answer in rows}
    mode = {"oracle": True}

    def scorer(_: object, __: object, prompt: str, candidates: list[str]) -> torch.Tensor:
        right = truth[prompt] if mode["oracle"] else candidates[0].strip()
        return torch.tensor([10.0 if c.strip() == right else 0.0 for c in candidates])

    monkeypatch.setattr(probe, "lm_candidate_scores", scorer)
    oracle = lm_scene_qa(lm, tokenizer, trials=12, end_of_chunk_token="<E>")
    assert all(r["accuracy"] == 1.0 for r in oracle.values())
    mode["oracle"] = False
    fixed = lm_scene_qa(lm, tokenizer, trials=12, end_of_chunk_token="<E>")
    for kind, rows in forms.items():
        assert fixed[kind]["accuracy"] == pytest.approx(sum(answer == 0 for _, _, answer in rows) / 12)
        assert fixed[kind]["said_most"] == 1.0
    line = scene_qa_summary(fixed)
    assert line.startswith("colour ") and "exists" in line and line.count("says one answer 100% of the time") == 4
    assert line.endswith(", 12 questions per kind")


def test_position_keeping_scores_what_the_latents_keep_not_what_the_encoder_has(
        lm_dirs: dict[str, str], clip_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    results = position_keeping(model, images=240, seed=3)
    assert results["cells"] == 9.0
    assert "from the resampler's latents" in keeping_summary(results)

    # Latents that mark where the image departs from its commonest colour (8 x 8 cells) say where its object is ...
    def object_map_as_latents(pixel_values: torch.Tensor, frame_mask: object = None) -> torch.Tensor:
        cells = torch.nn.functional.adaptive_avg_pool2d(pixel_values.flatten(0, 1), 8).flatten(2)  # (N, 3, 64)
        departure = (cells - cells.median(-1, keepdim=True).values).abs().sum(1, keepdim=True)  # (N, 1, 64)
        return departure.transpose(1, 2)  # (N, 64, 1)

    monkeypatch.setattr(model, "encode_media", object_map_as_latents)
    seeing = position_keeping(model, images=240, seed=3)
    assert seeing["latents"] > seeing["majority"] + 0.4  # measured 0.80 against 0.20
    assert seeing["encoder"] == pytest.approx(results["encoder"])

    # ... latents that are the encoder's features themselves keep exactly what the encoder has ...
    def features_as_latents(pixel_values: torch.Tensor, frame_mask: object = None) -> torch.Tensor:
        return model.vision(pixel_values.flatten(0, 1))  # (N, P, D)

    monkeypatch.setattr(model, "encode_media", features_as_latents)
    assert position_keeping(model, images=240, seed=3)["latents"] == pytest.approx(results["encoder"])

    # ... and latents that ignore the image keep nothing: no better than naming the commonest cell.
    monkeypatch.setattr(model, "encode_media", lambda pixel_values, frame_mask=None: torch.ones(len(pixel_values), 4, 8))
    blind = position_keeping(model, images=240, seed=3)
    assert blind["latents"] <= blind["majority"] + 1e-6
    assert blind["encoder"] == pytest.approx(results["encoder"])


def test_position_keeping_rejects_too_few_images(lm_dirs: dict[str, str], clip_dir: str) -> None:
    with pytest.raises(ValueError, match="images >= 20"):
        position_keeping(build(lm_dirs["llama"], clip_dir), images=10)



def test_motion_keeping_scores_what_the_latents_keep_of_a_move(
        lm_dirs: dict[str, str], clip_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    results = motion_keeping(model, clips=160, seed=3)
    assert set(results) == {"encoder", "latents", "majority"}
    assert "from the resampler's latents" in motion_summary(results) and "4 directions" in motion_summary(results)

    # Latents that mark where the first and the last frame depart from their commonest colour (8 x 8 cells each)
    # say where the object went ...
    def ends_as_latents(pixel_values: torch.Tensor, frame_mask: object = None) -> torch.Tensor:
        ends = pixel_values[:, [0, -1]]  # (N, 2, 3, H, W)
        cells = torch.nn.functional.adaptive_avg_pool2d(ends.flatten(0, 1), 8).flatten(2)  # (2N, 3, 64)
        departure = (cells - cells.median(-1, keepdim=True).values).abs().sum(1)  # (2N, 64)
        return departure.reshape(len(pixel_values), 2 * 64, 1)

    monkeypatch.setattr(model, "encode_media", ends_as_latents)
    seeing = motion_keeping(model, clips=160, seed=3)
    assert seeing["latents"] > seeing["majority"] + 0.3
    assert seeing["encoder"] == pytest.approx(results["encoder"])

    # ... latents of the frames in any order (their mean) say where it was, not which way it went ...
    def mean_frame_as_latents(pixel_values: torch.Tensor, frame_mask: object = None) -> torch.Tensor:
        return ends_as_latents(pixel_values.mean(1, keepdim=True).expand_as(pixel_values))

    monkeypatch.setattr(model, "encode_media", mean_frame_as_latents)
    pooled = motion_keeping(model, clips=160, seed=3)
    assert pooled["latents"] < seeing["latents"] - 0.2

    # ... and latents that ignore the clip keep nothing: no better than naming the commonest direction.
    monkeypatch.setattr(model, "encode_media", lambda pixel_values, frame_mask=None: torch.ones(len(pixel_values), 4, 8))
    blind = motion_keeping(model, clips=160, seed=3)
    assert blind["latents"] <= blind["majority"] + 1e-6


def test_time_order_plan_pairs_each_clip_with_its_ending_played_backwards() -> None:
    plan = time_order_plan(6, seed=2)
    assert tuple(plan) == ("appear", "colour", "move") and all(len(items) == 6 for items in plan.values())
    assert plan == time_order_plan(6, seed=2)  # deterministic by seed (PIL images compare by pixels)
    appear = [(true, backwards) for _, _, true, backwards in plan["appear"]]
    assert appear[0] == ("appears", "vanishes") and appear[1] == ("vanishes", "appears")
    for frames, prompt, true, backwards in plan["colour"]:
        start, end = true.split(" to ")
        assert prompt.endswith("changes from") and backwards == f"{end} to {start}" and start != end
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
    for frames, prompt, true, backwards in plan["move"]:
        assert len(frames) == 8 and prompt.endswith(" moves") and opposite[true] == backwards


def test_time_order_gives_half_to_an_order_blind_model_and_all_to_one_that_reads_time(
        lm_dirs: dict[str, str], clip_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    # Without its temporal embedding the resampler pools a clip's frames as a set: reversed, the same latents.
    with torch.no_grad():
        model.resampler.frame_input.temporal_embedding.weight.zero_()
    blind = time_order(model, clips_per_kind=8, seed=1, batch_size=16)
    assert set(blind) == {"appear", "colour", "move"}
    for result in blind.values():
        assert set(result) == {"ordered", "reversed", "follows_order"}
        assert result["follows_order"] == pytest.approx(0.5, abs=1 / 8)  # one near-tie may fall either way
    assert "50% = blind to order" in time_order_summary(blind)

    # A scorer that sees which way the frames run (it knows each clip's first frame) and prefers the ending that
    # fits them follows the order every time; one that prefers a fixed ending whatever it sees, half the time.
    clips = [(np.asarray(frames[0]), np.asarray(frames[-1]), true)
             for items in time_order_plan(8, seed=1).values() for frames, _, true, _ in items]

    def oracle(_model: object, rows: list) -> torch.Tensor:
        scores = []
        for _, ending, frames in rows:
            shown = np.asarray(frames[0])
            ((forwards, true),) = [(np.array_equal(shown, first), true) for first, last, true in clips
                                   if np.array_equal(shown, first) or np.array_equal(shown, last)]
            scores.append(1.0 if (ending == true) == forwards else 0.0)
        return torch.tensor(scores)

    monkeypatch.setattr("flamingo_vlm.tinyworld.probe._continuation_logprobs", oracle)
    reads_time = time_order(model, clips_per_kind=8, seed=1, batch_size=5)  # batches split the pairs too
    assert all(r == {"ordered": 1.0, "reversed": 1.0, "follows_order": 1.0} for r in reads_time.values())

    monkeypatch.setattr("flamingo_vlm.tinyworld.probe._continuation_logprobs",
                        lambda _model, rows: torch.tensor([float(len(ending)) for _, ending, _ in rows]))
    fixed = time_order(model, clips_per_kind=8, seed=1)
    assert all(r["follows_order"] == 0.5 for r in fixed.values())
    with pytest.raises(ValueError, match="clips_per_kind >= 2"):
        time_order(model, clips_per_kind=1)


def test_motion_keeping_rejects_too_few_clips(lm_dirs: dict[str, str], clip_dir: str) -> None:
    with pytest.raises(ValueError, match="clips >= 20"):
        motion_keeping(build(lm_dirs["llama"], clip_dir), clips=10)


@pytest.fixture(scope="module")
def vqa_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vqa")
    build_eval_sets(root, seed=4, image_size=32, progress=False, num_captioning=2, num_vqa_images=24,
                    num_video_qa=2, num_novel_words=2, num_shapes=2, num_support=2)
    return root / "vqa" / "eval"


def test_question_binding_plan_asks_about_an_object_no_other_shares_a_colour_with() -> None:
    def record(image_id: int, *objects: tuple[str, str]) -> dict:
        return {"image_id": image_id, "scene": {"objects": [{"colour": c, "shape": s} for c, s in objects]}}

    records = [record(1, ("red", "star"), ("red", "circle")),  # no colour of its own: left out
               record(2, ("red", "star"), ("blue", "circle"), ("blue", "heart")),
               record(2, ("red", "star"), ("blue", "circle"), ("blue", "heart")),  # a second question, same scene
               record(3, ("green", "square"), ("teal", "cross")),
               record(4, ("white", "diamond"), ("black", "star"))]
    assert question_binding_plan(records, limit=10)[0] == (2, "red", "star")
    plan = question_binding_plan(records, limit=10)
    assert [p[0] for p in plan] == [2, 3, 4]
    assert plan[1] in {(3, "green", "square"), (3, "teal", "cross")}
    assert len(question_binding_plan(records, limit=2)) == 2


def test_question_binding_is_at_the_shuffled_level_while_the_gates_are_closed(
        lm_dirs: dict[str, str], clip_dir: str, vqa_folder: Path) -> None:
    model = build(lm_dirs["llama"], clip_dir)  # fresh gates are 0: the images cannot matter
    results = question_binding(model, vqa_folder, limit=10, batch_size=40)
    assert results["caption"] == results["shuffled"] and results["chance"] == pytest.approx(1 / 8)
    assert results["scenes"] == 10 and "question form" in question_binding_summary(results)


def test_question_binding_tells_a_model_that_answers_only_in_caption_form(
        lm_dirs: dict[str, str], clip_dir: str, vqa_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from PIL import Image

    model = build(lm_dirs["llama"], clip_dir)
    records = [json.loads(line) for line in (vqa_folder / "records.jsonl").read_text().splitlines()]
    plan = question_binding_plan(records, limit=12)
    truth = {}  # the pixels of each planned image -> the planned object's shape
    for image_id, _, shape in plan:
        image = Image.open(vqa_folder / "images" / f"{image_id}.png").convert("RGB")
        truth[model.processor("<image>", images=[image])["pixel_values"].flatten().numpy().tobytes()] = shape
    # Certain of the right shape word after "a picture of a <colour>"; uniform after a question.
    monkeypatch.setattr(model, "forward", word_oracle(
        model, lambda text, pixels, word: "a picture of a" in text and word == truth.get(pixels)))
    results = question_binding(model, vqa_folder, limit=12, batch_size=50)
    assert results["caption"] == 1.0
    # Uniform logits after a question: the shape word of fewest tokens (the first such) wins every one, so it is
    # right only where that is the answer.
    shapes = [s.value for s in Shape]
    tokenizer = model.processor.tokenizer
    winner = min(shapes, key=lambda w: len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]))
    assert results["question"] == pytest.approx(sum(shape == winner for _, _, shape in plan) / len(plan))
    assert results["shuffled"] < 1.0


def test_existence_check_plan_asks_about_the_own_shape_half_the_time_and_else_another() -> None:
    scenes, asked = existence_check_plan(400, seed=5)
    assert all(len(scene.objects) == 1 for scene in scenes)
    same = [shape == scene.objects[0].shape for scene, shape in zip(scenes, asked)]
    assert 0.42 < sum(same) / len(same) < 0.58
    assert len({shape for shape, s in zip(asked, same) if not s}) == len(Shape)  # every other shape gets asked
    again, asked_again = existence_check_plan(400, seed=5)
    assert asked_again == asked and [s.objects for s in again] == [s.objects for s in scenes]
    assert existence_check_plan(400, seed=6)[1] != asked


def test_existence_check_reads_the_question_but_no_match_while_the_gates_are_closed(
        lm_dirs: dict[str, str], clip_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build(lm_dirs["llama"], clip_dir)  # fresh gates are 0: the states at the answer do not see the image
    layers = model.decoder_layers()
    results = existence_check(model, images=400, seed=1, batch_size=100)
    assert len(results["layers"]) == len(layers) and results["images"] == 400
    assert all(not layer._forward_hooks for layer in layers)  # the probe leaves no hook behind
    top = results["layers"][-1]
    assert top["asked"] > 0.9  # the asked shape is in the prompt's own words
    assert top["match"] < 0.62  # measured 0.43-0.58 over three seeds: nothing about the image, so no match
    assert "whether they match" in existence_check_summary(results)

    # A model whose state at the answer holds "asked == seen" in one coordinate lets the probe read the match.
    scenes, asked = existence_check_plan(400, seed=1)
    match = torch.tensor([float(a == s.objects[0].shape) for s, a in zip(scenes, asked)])
    calls = {"done": 0}
    real_forward = layers[-1].forward

    def forward_writing_the_match(*args: object, **kwargs: object) -> object:
        output = real_forward(*args, **kwargs)
        hidden = output[0] if isinstance(output, tuple) else output
        batch = hidden.shape[0]
        hidden = hidden.clone()
        hidden[:, -1, 0] = 10 * match[calls["done"]: calls["done"] + batch]
        calls["done"] += batch
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    monkeypatch.setattr(layers[-1], "forward", forward_writing_the_match)
    told = existence_check(model, images=400, seed=1, batch_size=100)
    assert told["layers"][-1]["match"] > 0.95 and told["layers"][0]["match"] < 0.62
