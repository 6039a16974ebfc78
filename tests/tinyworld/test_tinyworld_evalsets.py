"""Tiny-world evaluation sets: standard formats, answers recomputed from the records, held-out wordings,
disjoint support/eval splits, reserved novel words, determinism; and the one-call build."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from flamingo_vlm.data.stream import expand_shards, read_raw_records
from flamingo_vlm.tinyworld import Shape, render_clip, render_scene
from flamingo_vlm.tinyworld.build import build_tiny_world, tiny_world_data_command
from flamingo_vlm.tinyworld.corpus import read_lm_corpus
from flamingo_vlm.tinyworld.datasets import (
    has_eval_format,
    iter_document_records,
    png_bytes,
    reserved_eval_words,
    uses_heldout_wording,
)
from flamingo_vlm.tinyworld.evalsets import (
    SUPPORT_ID_OFFSET,
    VIDEO_QUESTION_KINDS,
    build_eval_sets,
    clip_from_dict,
    novel_word_binding,
    recompute_answer,
    scene_from_dict,
)

SIZES = {"num_captioning": 6, "num_vqa_images": 8, "num_video_qa": 8, "num_novel_words": 10, "num_shapes": 8,
         "num_support": 5}
SETS = ("coco", "vqa", "video_qa", "novel_words", "shapes")


def _build(root: Path, seed: int) -> dict:
    return build_eval_sets(root, seed=seed, image_size=32, progress=False, **SIZES)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("eval")
    return root, _build(root, seed=11)


def _load(path: str):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def _tree_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_differs(built, tmp_path: Path) -> None:
    root, _ = built
    same = tmp_path / "same"
    _build(same, seed=11)
    assert _tree_digests(same) == _tree_digests(root)
    other = tmp_path / "other"
    _build(other, seed=12)
    a, b = _tree_digests(root), _tree_digests(other)
    images = [k for k in a if k.endswith(".png")]
    assert images and all(a[k] != b.get(k) for k in images)


def test_coco_captions_format(built) -> None:
    _, paths = built
    for split, n in (("eval", 6), ("support", 5)):
        p = paths["coco"][split]
        data = _load(p["captions"])
        assert {"images", "annotations"} <= set(data)
        assert len(data["images"]) == n
        ann = Counter(a["image_id"] for a in data["annotations"])
        assert set(ann) == {im["id"] for im in data["images"]} and set(ann.values()) == {5}
        assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
        assert all(isinstance(a["caption"], str) and a["caption"] for a in data["annotations"])
        records = {r["image_id"]: r for r in _jsonl(p["records"])}
        for im in data["images"]:
            assert im["file_name"] == f"images/{im['id']}.png"
            path = Path(p["captions"]).parent / im["file_name"]
            assert path.is_file()
            scene = scene_from_dict(records[im["id"]]["scene"])
            # The stored scene is the truth behind the image: it re-renders to the same bytes.
            assert png_bytes(render_scene(scene, 32)) == path.read_bytes()
            caps = [a["caption"] for a in data["annotations"] if a["image_id"] == im["id"]]
            assert len(set(caps)) >= 4  # varied references
            for cap in caps:  # every caption names every object (colour and shape)
                for obj in scene.objects:
                    assert str(obj.colour) in cap and str(obj.shape) in cap, (cap, obj)
            flags = [c["held_out"] for c in records[im["id"]]["captions"]]
            assert flags.count(True) == 2
            held = [c["caption"] for c in records[im["id"]]["captions"] if c["held_out"]]
            assert all(uses_heldout_wording(c) for c in held)


def test_vqa_format_and_answers_recomputed(built) -> None:
    _, paths = built
    held_out = 0
    for split in ("eval", "support"):
        p = paths["vqa"][split]
        questions = _load(p["questions"])["questions"]
        annotations = _load(p["annotations"])["annotations"]
        records = {r["question_id"]: r for r in _jsonl(p["records"])}
        assert [q["question_id"] for q in questions] == [a["question_id"] for a in annotations]
        assert len({q["question_id"] for q in questions}) == len(questions)
        by_image = Counter(q["image_id"] for q in questions)
        assert set(by_image.values()) <= {1, 2, 3} and sum(by_image.values()) >= 2 * len(by_image)
        for q, a in zip(questions, annotations, strict=True):
            assert set(a) == {"question_id", "image_id", "question_type", "answer_type", "multiple_choice_answer",
                              "answers"}
            assert len(a["answers"]) == 10
            assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
            assert {x["answer"] for x in a["answers"]} == {a["multiple_choice_answer"]}
            assert all(x["answer_confidence"] == "yes" for x in a["answers"])
            assert (Path(p["images"]) / f"{q['image_id']}.png").is_file()
            rec = records[q["question_id"]]
            assert rec["question"] == q["question"] and rec["kind"] == a["question_type"]
            answer = a["multiple_choice_answer"]
            assert recompute_answer(rec) == answer
            assert len(answer.split()) <= 2
            kind_type = {"exists": "yes/no", "relation_yesno": "yes/no", "count": "number"}
            assert a["answer_type"] == kind_type.get(rec["kind"], "other")
            if a["answer_type"] == "number":
                assert answer.isdigit()
            if rec["held_out"]:
                held_out += 1
                assert uses_heldout_wording(q["question"])
            else:
                assert not uses_heldout_wording(q["question"])
    assert held_out >= 5


def test_recompute_answer_can_disagree() -> None:
    # The checker is not a copy of the stored answer: a changed scene changes its verdict.
    record = {"kind": "background", "scene": {"background": {"kind": "plain", "colours": ["red"],
                                                              "direction": "left-right", "texture_seed": 0},
                                              "objects": []}}
    assert recompute_answer(record) == "red"
    record["scene"]["background"]["colours"] = ["blue"]
    assert recompute_answer(record) == "blue"


def test_video_qa_format_and_answers_recomputed(built) -> None:
    _, paths = built
    for split in ("eval", "support"):
        p = paths["video_qa"][split]
        entries = _load(p["video_qa"])
        records = {r["id"]: r for r in _jsonl(p["records"])}
        assert isinstance(entries, list) and entries
        kinds = Counter()
        for e in entries:
            assert set(e) == {"id", "frames", "question", "answer", "question_type"}
            assert len(e["frames"]) == 8
            base = Path(p["video_qa"]).parent
            assert all((base / f).is_file() for f in e["frames"])
            rec = records[e["id"]]
            assert recompute_answer(rec) == e["answer"]
            kinds[rec["kind"]] += 1
            assert "clip_" + e["question_type"] == rec["kind"]  # the harness reports accuracy per question type
            clip = clip_from_dict(rec["clip"])
            first, last = render_clip(clip, 32)[0], render_clip(clip, 32)[-1]
            assert png_bytes(first) == (base / e["frames"][0]).read_bytes()
            assert png_bytes(last) == (base / e["frames"][-1]).read_bytes()
        assert set(kinds) <= set(VIDEO_QUESTION_KINDS)
        if split == "eval":
            assert set(kinds) == set(VIDEO_QUESTION_KINDS)  # 8 clips: every kind twice


@pytest.mark.parametrize("name", ["novel_words", "shapes"])
def test_classification_sets(built, name: str) -> None:
    _, paths = built
    classes = None
    for split in ("eval", "support"):
        p = paths[name][split]
        split_classes = _load(p["classes"])
        classes = classes or split_classes
        assert split_classes == classes  # one label set (and binding) for both splits
        rows = _jsonl(p["jsonl"])
        records = _jsonl(p["records"])
        assert all(set(r) == {"id", "image", "label"} for r in rows)
        assert [r["id"] for r in rows] == [r["image_id"] for r in records]
        assert {r["label"] for r in rows} <= set(classes)
        base = Path(p["jsonl"]).parent
        for row, rec in zip(rows, records, strict=True):
            assert (base / row["image"]).is_file()
            scene = scene_from_dict(rec["scene"])
            assert len(scene.objects) == 1 and str(scene.objects[0].shape) == rec["shape"]
            with Image.open(base / row["image"]) as img:
                assert img.size == (32, 32)
    if name == "shapes":
        assert classes == [str(s) for s in Shape]
    else:
        binding = novel_word_binding(11)
        assert classes == list(binding) and len(classes) == 5
        assert set(classes) <= reserved_eval_words()
        for rec in _jsonl(paths[name]["eval"]["records"]):
            assert binding[rec["label"]] == rec["shape"]


def test_novel_word_binding_differs_across_seeds() -> None:
    bindings = {tuple(sorted(novel_word_binding(s).items())) for s in range(6)}
    assert len(bindings) == 6


def test_support_and_eval_splits_share_no_image(built) -> None:
    _, paths = built
    for name in SETS:
        digests, ids = {}, {}
        for split in ("eval", "support"):
            folder = Path(paths[name][split].get("images") or paths[name][split]["clips"])
            files = [p for p in folder.rglob("*.png")]
            assert files
            digests[split] = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
            ids[split] = {int(p.stem) if name != "video_qa" else int(p.parent.name) for p in files}
        assert digests["eval"].isdisjoint(digests["support"]), name
        assert max(ids["eval"]) < SUPPORT_ID_OFFSET < min(ids["support"]), name


def test_readme_describes_every_set(built) -> None:
    _, paths = built
    text = Path(paths["readme"]).read_text(encoding="utf-8")
    for name in SETS:
        assert f"`{name}/" in text
    assert "Question: {q} Answer: {a}" in text and "Output: {caption}" in text


# --- the one-call build ----------------------------------------------------------------------------------


def test_build_tiny_world_writes_everything_and_no_eval_word_leaks(tmp_path: Path, capsys) -> None:
    out = tmp_path / "world"
    assert tiny_world_data_command(str(out), seed=2, scale=0.001) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "tiny_world.json").read_text())
    assert manifest["counts"]["num_pairs"] == 20 and manifest["counts"]["num_support"] == 1
    assert set(manifest["train"]) == {"pairs", "video", "interleaved", "text"}
    for rel in [*manifest["train"].values(), manifest["lm_corpus"], manifest["tokenizer_text"]]:
        assert (out / rel).is_file() and rel in printed.replace(str(out) + "/", "")
    for name in SETS:
        assert (out / "eval" / name / "eval").is_dir() and (out / "eval" / name / "support").is_dir()
    eval_words = set(manifest["novel_word_binding"])
    corpus = list(read_lm_corpus(out / manifest["lm_corpus"]))
    assert len(corpus) == 50
    shard_texts = [raw["txt"].decode() for url in expand_shards(str(out / manifest["train"]["text"]))
                   for raw in read_raw_records(url)]
    assert shard_texts == corpus  # the text shards are the LM corpus, document for document
    texts = corpus + [s for d in iter_document_records([str(out / manifest["train"]["interleaved"])])
                      for s in d["text_list"]]
    for text in texts:
        assert not eval_words & set(re.findall(r"[a-z]+", text.lower()))
        assert not has_eval_format(text)


def test_build_tiny_world_writes_the_same_bytes_with_one_or_two_processes(tmp_path: Path) -> None:
    def contents(root: Path) -> dict[str, bytes]:
        return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}

    build_tiny_world(tmp_path / "one", seed=3, scale=0.002, progress=False, workers=1)
    build_tiny_world(tmp_path / "two", seed=3, scale=0.002, progress=False, workers=2)
    one, two = contents(tmp_path / "one"), contents(tmp_path / "two")
    assert "lm/corpus.txt" in two and "lm/tokenizer_text.txt" in two
    assert one == two


def test_leak_check_reads_capitalised_words_whole(tmp_path: Path) -> None:
    from flamingo_vlm.tinyworld.build import _verify

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Stant: a red circle<|endofchunk|>Stant: a blue star\n")
    _verify({}, corpus, {"tant"})  # a document label "Stant:" is not the reserved word "tant"
    corpus.write_text("Tant: a red circle\n")
    with pytest.raises(RuntimeError, match="tant"):
        _verify({}, corpus, {"tant"})  # a reserved word is caught capitalised too


def test_build_tiny_world_rejects_bad_scale(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_tiny_world(tmp_path, scale=0)
    with pytest.raises(ValueError, match="workers"):
        build_tiny_world(tmp_path, workers=3)
    assert tiny_world_data_command(str(tmp_path), seed=-1, scale=0.001) == 1
