"""Each benchmark format parsed from fixture files; malformed files give errors naming file, field and entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flamingo_vlm.evaluation import datasets as data
from flamingo_vlm.evaluation.datasets import DataFormatError
from tests.evaluation import fixtures as fx

# --------------------------------------------------------------------------------------------------
# Parsing each format
# --------------------------------------------------------------------------------------------------


def test_coco_captions(tmp_path: Path) -> None:
    path, images = fx.write_coco_captions(tmp_path, num_images=3)
    examples = data.load_captions(path, images)
    assert [e.id for e in examples] == ["100", "101", "102"]
    assert examples[1].image == images / "COCO_val2014_000000000101.jpg"
    assert examples[1].captions == (fx.caption_of(1, 0), fx.caption_of(1, 1))
    assert examples[0].media == examples[0].image


def test_coco_captions_without_file_name_use_the_coco_pattern(tmp_path: Path) -> None:
    path, images = fx.write_coco_captions(tmp_path, num_images=2)
    content = json.loads(path.read_text())
    for entry in content["images"]:
        del entry["file_name"]
    path.write_text(json.dumps(content))
    examples = data.load_captions(path, images, split="val2014")
    assert examples[0].image.name == "COCO_val2014_000000000100.jpg"
    with pytest.raises(DataFormatError, match="needs \\{split\\}"):
        data.load_captions(path, images)


def test_karpathy_split_selection(tmp_path: Path) -> None:
    path, images = fx.write_karpathy(tmp_path, num_images=8)
    test = data.load_captions(path, images, split="test")
    train = data.load_captions(path, images, split="train")  # train + restval
    everything = data.load_captions(path, images)
    assert [e.id for e in test] == ["502", "503", "506", "507"]
    assert [e.id for e in train] == ["500", "501", "504", "505"]
    assert len(everything) == 8
    assert test[0].image == images / "val2014" / "COCO_val2014_000000000002.jpg"
    assert test[0].captions[0] == fx.caption_of(2, 0)
    with pytest.raises(DataFormatError, match="no image in split 'val'"):
        data.load_captions(path, images, split="val")


def test_caption_jsonl(tmp_path: Path) -> None:
    path = fx.write_caption_jsonl(tmp_path, num_images=3)
    examples = data.load_captions(path)  # images relative to the file's folder
    assert [e.id for e in examples] == ["p0", "p1", "p2"]
    assert examples[2].image == tmp_path / "pairs" / "2.png"
    assert len(examples[2].captions) == 2


def test_vqav2(tmp_path: Path) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path, num_questions=6, num_images=3)
    examples = data.load_vqa(questions, annotations, images)
    assert len(examples) == 6
    first = examples[0]
    assert first.id == "1000" and first.image_id == "1"
    assert first.image == images / "COCO_val2014_000000000001.jpg"  # split from data_subtype
    assert first.question == "what colour is the red?"
    assert len(first.answers) == 10
    assert first.demo_answer == "red"  # the most frequent of the 10 answers
    assert [e.answer_type for e in examples] == [fx.ANSWER_TYPES[q % 3] for q in range(6)]
    assert [e.question_type for e in examples] == [fx.QUESTION_TYPES[q % 2] for q in range(6)]


@pytest.mark.parametrize("field", ["answer_type", "question_type"])
def test_vqa_answer_and_question_types_are_optional_and_checked(tmp_path: Path, field: str) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path)
    content = json.loads(annotations.read_text())
    del content["annotations"][0][field]
    annotations.write_text(json.dumps(content))
    loaded = data.load_vqa(questions, annotations, images)
    assert getattr(loaded[0], field) == "" and getattr(loaded[1], field) != ""
    content["annotations"][2][field] = 3
    annotations.write_text(json.dumps(content))
    with pytest.raises(DataFormatError, match=rf"field '{field}' of annotations\[2\] must be a string"):
        data.load_vqa(questions, annotations, images)


def test_vqa_plain_string_answers_and_image_pattern(tmp_path: Path) -> None:
    """TextVQA/VizWiz-style: string image ids naming the file, answers as plain strings."""
    fx.write_image(tmp_path / "imgs" / "VizWiz_val_00000001.jpg", seed=1)
    (tmp_path / "q.json").write_text(json.dumps({"questions": [
        {"image_id": "VizWiz_val_00000001", "question": "What is this?", "question_id": "v1"}]}))
    (tmp_path / "a.json").write_text(json.dumps({"annotations": [{"question_id": "v1", "answers": ["soup", "soup"]}]}))
    (example,) = data.load_vqa(tmp_path / "q.json", tmp_path / "a.json", tmp_path / "imgs",
                               image_pattern="{image_id}.jpg")
    assert example.answers == ("soup", "soup") and example.image.name == "VizWiz_val_00000001.jpg"


def test_classification_jsonl(tmp_path: Path) -> None:
    path, names = fx.write_classification(tmp_path, num_examples=7)
    examples, class_names = data.load_classification(path, names)
    assert class_names == fx.CLASS_NAMES
    assert [e.label for e in examples] == [0, 1, 2, 3, 4, 5, 0]  # line 2 gave its label by name
    assert examples[3].image == tmp_path / "cls" / "img_3.png"
    assert examples[0].id == "1"  # line number when there is no id


def test_class_names_from_json(tmp_path: Path) -> None:
    (tmp_path / "names.json").write_text(json.dumps(["tench", "goldfish"]))
    assert data.load_class_names(tmp_path / "names.json") == ["tench", "goldfish"]
    with pytest.raises(DataFormatError, match="duplicate"):
        data.load_class_names(["a", "b", "a"])


def test_hateful_memes(tmp_path: Path) -> None:
    path = fx.write_hateful_memes(tmp_path, num_examples=4)
    examples = data.load_hateful_memes(path)
    assert [e.label for e in examples] == [0, 1, 0, 1]
    assert examples[1].id == "42001" and examples[1].text == "meme text number 1"
    assert examples[1].image == tmp_path / "img" / "42001.png"


def test_video_qa_frames_in_natural_order(tmp_path: Path) -> None:
    path = fx.write_video_qa(tmp_path, num_videos=3)
    examples = data.load_video_qa(path)
    assert [f.name for f in examples[0].frames] == ["frame1.png", "frame2.png", "frame10.png"]
    assert examples[0].answers == ("red",) and examples[0].media == examples[0].frames
    # An explicit frame list keeps its order; "answers" lists every accepted answer.
    assert [f.name for f in examples[2].frames] == ["frame2.png", "frame1.png"]
    assert examples[2].answers == ("green", "something")



def test_video_qa_question_type_is_optional_and_checked(tmp_path: Path) -> None:
    path = fx.write_video_qa(tmp_path, num_videos=3)
    assert [e.question_type for e in data.load_video_qa(path)] == ["", "", ""]
    entries = json.loads(path.read_text())
    for index, entry in enumerate(entries):
        entry["question_type"] = "what" if index else "which"
    path.write_text(json.dumps(entries))
    assert [e.question_type for e in data.load_video_qa(path)] == ["which", "what", "what"]
    entries[1]["question_type"] = 3
    path.write_text(json.dumps(entries))
    with pytest.raises(DataFormatError, match="field 'question_type' of entry 1 must be a string"):
        data.load_video_qa(path)

# --------------------------------------------------------------------------------------------------
# Malformed files: errors name the file, the field and the entry
# --------------------------------------------------------------------------------------------------


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    with pytest.raises(DataFormatError, match=f"{path}: not valid JSON"):
        data.load_captions(path)


def test_vqa_missing_field_names_file_field_and_index(tmp_path: Path) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path)
    content = json.loads(questions.read_text())
    del content["questions"][2]["question"]
    questions.write_text(json.dumps(content))
    with pytest.raises(DataFormatError) as error:
        data.load_vqa(questions, annotations, images)
    assert str(questions) in str(error.value)
    assert "questions[2]" in str(error.value) and "'question'" in str(error.value)


def test_vqa_wrong_type_and_missing_annotation(tmp_path: Path) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path)
    content = json.loads(annotations.read_text())
    content["annotations"][1]["answers"] = "blue"
    annotations.write_text(json.dumps(content))
    with pytest.raises(DataFormatError, match=r"field 'answers' of annotations\[1\] must be list"):
        data.load_vqa(questions, annotations, images)
    content["annotations"] = content["annotations"][:3]
    content["annotations"][1]["answers"] = ["blue"]
    annotations.write_text(json.dumps(content))
    with pytest.raises(DataFormatError, match=rf"{annotations}: no entry of 'annotations' has question_id"):
        data.load_vqa(questions, annotations, images)


def test_missing_image_file_names_the_path(tmp_path: Path) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path)
    missing = images / "COCO_val2014_000000000002.jpg"
    missing.unlink()
    with pytest.raises(DataFormatError, match=f"image file not found: {missing}"):
        data.load_vqa(questions, annotations, images)


def test_missing_top_level_field(tmp_path: Path) -> None:
    questions, annotations, images = fx.write_vqa(tmp_path)
    annotations.write_text(json.dumps({"info": {}}))
    with pytest.raises(DataFormatError, match=f"{annotations}: missing top-level field 'annotations'"):
        data.load_vqa(questions, annotations, images)


def test_coco_caption_for_unknown_image(tmp_path: Path) -> None:
    path, images = fx.write_coco_captions(tmp_path, num_images=2)
    content = json.loads(path.read_text())
    content["annotations"][3]["image_id"] = 999
    path.write_text(json.dumps(content))
    with pytest.raises(DataFormatError, match=r"'image_id' of annotations\[3\] is 999"):
        data.load_captions(path, images)


def test_karpathy_missing_sentences(tmp_path: Path) -> None:
    path, images = fx.write_karpathy(tmp_path, num_images=4)
    content = json.loads(path.read_text())
    del content["images"][2]["sentences"]
    path.write_text(json.dumps(content))
    with pytest.raises(DataFormatError, match=r"images\[2\] has no field 'sentences'"):
        data.load_captions(path, images)


def test_unknown_caption_layout(tmp_path: Path) -> None:
    path = tmp_path / "what.json"
    path.write_text(json.dumps({"data": []}))
    with pytest.raises(DataFormatError, match="not a captions file"):
        data.load_captions(path)


def test_classification_errors_name_line_and_field(tmp_path: Path) -> None:
    path, names = fx.write_classification(tmp_path, num_examples=3)
    lines = path.read_text().splitlines()
    lines[1] = json.dumps({"image": "cls/img_1.png", "label": 17})
    path.write_text("\n".join(lines))
    with pytest.raises(DataFormatError, match=rf"{path}: field 'label' of line 2 is 17, outside \[0, 6\)"):
        data.load_classification(path, names)
    lines[1] = json.dumps({"image": "cls/img_1.png", "label": "zebra"})
    path.write_text("\n".join(lines))
    with pytest.raises(DataFormatError, match="'zebra', not one of the class names"):
        data.load_classification(path, names)
    lines[1] = json.dumps({"label": 1})
    path.write_text("\n".join(lines))
    with pytest.raises(DataFormatError, match="line 2 has no field 'image'"):
        data.load_classification(path, names)
    lines[1] = "{not json"
    path.write_text("\n".join(lines))
    with pytest.raises(DataFormatError, match=f"{path}:2: not valid JSON"):
        data.load_classification(path, names)


def test_hateful_memes_label_must_be_binary(tmp_path: Path) -> None:
    path = fx.write_hateful_memes(tmp_path, num_examples=2)
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    record["label"] = 2
    lines[0] = json.dumps(record)
    path.write_text("\n".join(lines))
    with pytest.raises(DataFormatError, match="field 'label' of line 1 must be 0 or 1"):
        data.load_hateful_memes(path)
    record["label"] = True  # a boolean is not a label
    lines[0] = json.dumps(record)
    path.write_text("\n".join(lines))
    with pytest.raises(DataFormatError, match="field 'label' of line 1 must be int"):
        data.load_hateful_memes(path)


def test_video_qa_errors(tmp_path: Path) -> None:
    path = fx.write_video_qa(tmp_path, num_videos=2)
    entries = json.loads(path.read_text())
    entries[0]["video"] = "videos/nowhere"
    path.write_text(json.dumps(entries))
    with pytest.raises(DataFormatError, match=f"entry 0: frames folder not found: {tmp_path / 'videos' / 'nowhere'}"):
        data.load_video_qa(path)
    (tmp_path / "videos" / "empty").mkdir()
    entries[0]["video"] = "videos/empty"
    path.write_text(json.dumps(entries))
    with pytest.raises(DataFormatError, match="holds no image files"):
        data.load_video_qa(path)
    entries[0]["video"] = "videos/video0"
    del entries[1]["question"]
    path.write_text(json.dumps(entries))
    with pytest.raises(DataFormatError, match=f"{path}: entry 1 has no field 'question'"):
        data.load_video_qa(path)
