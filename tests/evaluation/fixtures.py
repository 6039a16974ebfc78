"""Small benchmark files in each supported format, written into a test's temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

WORDS = ["red", "blue", "green", "star", "circle", "square", "two", "cat"]


def write_image(path: Path, seed: int, size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def caption_of(i: int, j: int = 0) -> str:
    return f"a {WORDS[(i + j) % len(WORDS)]} {WORDS[(i * 3 + j + 1) % len(WORDS)]}."


def write_coco_captions(root: Path, num_images: int = 6) -> tuple[Path, Path]:
    """COCO captions JSON (images with file_name, two captions each) -> (annotations file, image folder)."""
    images = root / "coco_images"
    entries, annotations = [], []
    for i in range(num_images):
        image_id = 100 + i
        name = f"COCO_val2014_{image_id:012d}.jpg"
        write_image(images / name, seed=i)
        entries.append({"id": image_id, "file_name": name, "height": 24, "width": 24})
        for j in range(2):
            annotations.append({"image_id": image_id, "id": 1000 + 2 * i + j, "caption": caption_of(i, j)})
    path = root / "captions_val2014.json"
    path.write_text(json.dumps({"info": {}, "images": entries, "annotations": annotations}))
    return path, images


def write_karpathy(root: Path, num_images: int = 8) -> tuple[Path, Path]:
    """Karpathy split JSON: half 'train'/'restval', half 'test', with filepath subfolders."""
    images = root / "karpathy_images"
    entries = []
    for i in range(num_images):
        split = ("train", "restval", "test", "test")[i % 4]
        folder = "train2014" if split != "test" else "val2014"
        name = f"COCO_{folder}_{i:012d}.jpg"
        write_image(images / folder / name, seed=50 + i)
        entries.append({"filepath": folder, "filename": name, "imgid": i, "split": split, "cocoid": 500 + i,
                        "sentids": [2 * i, 2 * i + 1],
                        "sentences": [{"raw": caption_of(i, j), "tokens": caption_of(i, j).split(), "imgid": i,
                                       "sentid": 2 * i + j} for j in range(2)]})
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return path, images


def write_caption_jsonl(root: Path, num_images: int = 6) -> Path:
    """JSONL of {"image", "captions"} with images next to the file (also used for retrieval)."""
    lines = []
    for i in range(num_images):
        write_image(root / "pairs" / f"{i}.png", seed=200 + i)
        lines.append(json.dumps({"image": f"pairs/{i}.png", "captions": [caption_of(i), caption_of(i, 1)],
                                 "id": f"p{i}"}))
    path = root / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


ANSWER_TYPES = ("other", "yes/no", "number")  # write_vqa's question q has type ANSWER_TYPES[q % 3]
QUESTION_TYPES = ("what colour is the", "is there a")  # and question type QUESTION_TYPES[q % 2]


def write_vqa(root: Path, num_questions: int = 8, num_images: int = 4, split: str = "val2014",
              prefix: str = "") -> tuple[Path, Path, Path]:
    """VQAv2 questions + annotations (10 answers each); two questions per image. -> (questions, annotations, images)."""
    images = root / f"{prefix}vqa_images"
    for i in range(num_images):
        write_image(images / f"COCO_{split}_{i + 1:012d}.jpg", seed=300 + i)
    questions, annotations = [], []
    for q in range(num_questions):
        image_id = q % num_images + 1
        question_id = image_id * 1000 + q
        questions.append({"image_id": image_id, "question": f"what colour is the {WORDS[q % 8]}?",
                          "question_id": question_id})
        answers = [WORDS[q % 3]] * 6 + [WORDS[(q + 1) % 3]] * 4
        annotations.append({"question_id": question_id, "image_id": image_id, "question_type": QUESTION_TYPES[q % 2],
                            "answer_type": ANSWER_TYPES[q % 3], "multiple_choice_answer": answers[0],
                            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": n + 1}
                                        for n, a in enumerate(answers)]})
    q_path = root / f"{prefix}questions.json"
    a_path = root / f"{prefix}annotations.json"
    q_path.write_text(json.dumps({"info": {}, "task_type": "Open-Ended", "data_type": "mscoco",
                                  "data_subtype": split, "questions": questions}))
    a_path.write_text(json.dumps({"info": {}, "data_subtype": split, "annotations": annotations}))
    return q_path, a_path, images


CLASS_NAMES = ["cat", "dog", "bird", "fish", "horse", "cow"]


def write_classification(root: Path, num_examples: int = 8) -> tuple[Path, Path]:
    """JSONL of {"image", "label"} (ints and one class name) + a class-name text file."""
    names = root / "classes.txt"
    names.write_text("\n".join(CLASS_NAMES) + "\n")
    lines = []
    for i in range(num_examples):
        write_image(root / "cls" / f"img_{i}.png", seed=400 + i)
        label: int | str = i % len(CLASS_NAMES)
        if i == 1:
            label = CLASS_NAMES[1]  # labels may be given by name
        lines.append(json.dumps({"image": f"cls/img_{i}.png", "label": label}))
    path = root / "classification.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, names


def write_hateful_memes(root: Path, num_examples: int = 8) -> Path:
    """HatefulMemes JSONL: {"id", "img": "img/ID.png", "label", "text"} with both labels present."""
    lines = []
    for i in range(num_examples):
        meme_id = 42000 + i
        write_image(root / "img" / f"{meme_id}.png", seed=500 + i)
        lines.append(json.dumps({"id": meme_id, "img": f"img/{meme_id}.png", "label": i % 2,
                                 "text": f"meme text number {i}"}))
    path = root / "dev_seen.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_video_qa(root: Path, num_videos: int = 6) -> Path:
    """Video QA JSON: frame folders (frame1, frame2, frame10: natural order) and one explicit frame list."""
    entries = []
    for v in range(num_videos):
        folder = root / "videos" / f"video{v}"
        for n, frame in enumerate((1, 2, 10)):
            write_image(folder / f"frame{frame}.png", seed=600 + 10 * v + n)
        answer = WORDS[v % 4]
        if v == num_videos - 1:
            entries.append({"id": f"q{v}", "frames": [f"videos/video{v}/frame2.png", f"videos/video{v}/frame1.png"],
                            "question": "what is shown?", "answers": [answer, "something"]})
        else:
            entries.append({"id": f"q{v}", "video": f"videos/video{v}", "question": f"what is in video {v}?",
                            "answer": answer})
    path = root / "video_qa.json"
    path.write_text(json.dumps(entries))
    return path
