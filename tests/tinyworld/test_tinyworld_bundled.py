"""The bundled tiny-world model: loads by name, matches its card, stays small, and the demo runs on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingo_vlm import Flamingo
from flamingo_vlm.cli import main
from flamingo_vlm.hub import BUNDLED_MODELS
from flamingo_vlm.tinyworld.card import CARD_NAME, card_facts, read_card_facts
from flamingo_vlm.tinyworld.demo import run_demo
from flamingo_vlm.tinyworld.render import render_scene
from flamingo_vlm.tinyworld.scene import sample_scene

BUNDLE = BUNDLED_MODELS["tiny-world"]


@pytest.fixture(scope="module")
def bundled() -> Flamingo:
    return Flamingo.from_pretrained("tiny-world")


def test_bundled_model_is_small_and_matches_its_card(bundled: Flamingo) -> None:
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    assert size <= 25 * 1024 * 1024
    assert read_card_facts(BUNDLE / CARD_NAME) == card_facts(bundled)
    assert bundled.config.extra["recipe"] == "flamingo train tiny-world"


def test_bundled_model_answers_a_prompt(bundled: Flamingo) -> None:
    import numpy as np

    image = render_scene(sample_scene(np.random.default_rng(123), min_objects=1, max_objects=1))
    inputs = bundled.processor("<image>Output:", images=[image])
    out = bundled.generate(**inputs, max_new_tokens=8, num_beams=3)
    assert bundled.processor.batch_decode(out)[0].strip() != ""


def test_demo_runs_and_prints_its_table(bundled: Flamingo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = run_demo(bundled, shots=(0, 4), limit=4, output=tmp_path / "demo.html", progress=False)
    printed = capsys.readouterr().out
    assert "| task |" in printed and "4-shot" in printed
    assert "4 queries per cell" in printed and "by 25.0 points" in printed  # how noisy the table is
    assert {t["task"] for t in results["tasks"]} == {"captioning", "vqa", "video_qa", "novel_words"}
    assert results["demo"]["dtype"] == "fp32"
    page = (tmp_path / "demo.html").read_text()
    assert page.count("data:image/png;base64") > 10 and (tmp_path / "demo.png").is_file()


def test_generate_command_on_the_bundled_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    for i in range(2):
        render_scene(sample_scene(np.random.default_rng(i))).save(tmp_path / f"{i}.png")
    prompt = "<image>Q: what shape is it? A: circle<|endofchunk|><image>Q: what shape is it? A:"
    assert main(["generate", "--model", "tiny-world", "--image", str(tmp_path / "0.png"), "--image",
                 str(tmp_path / "1.png"), "--prompt", prompt, "--max-new-tokens", "4"]) == 0
    answer = capsys.readouterr().out.strip()
    assert answer != ""
    # The same greedy answer from bf16 weights (its first token leads the next by 0.53 in fp32's logits).
    answers = []
    for dtype in ("fp32", "bf16"):
        assert main(["generate", "--model", "tiny-world", "--image", str(tmp_path / "0.png"), "--image",
                     str(tmp_path / "1.png"), "--prompt", prompt, "--max-new-tokens", "4", "--num-beams", "1",
                     "--dtype", dtype]) == 0
        answers.append(capsys.readouterr().out.strip())
    assert answers[0] != "" and answers[0] == answers[1]


def test_demo_with_rices_retrieves_demonstrations_and_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the demo renders its world
    output = tmp_path / "demo.html"
    assert main(["demo", "--task", "novel_words", "--shots", "0", "4", "--limit", "4", "--demos", "rices",
                 "--output", str(output)]) == 0
    assert "| novel_words |" in capsys.readouterr().out
    results = json.loads(output.with_suffix(".json").read_text())
    assert results["demo"]["demos"] == "rices"
    (entry,) = results["tasks"]
    assert entry["settings"]["demos"] == "rices" and entry["settings"]["zero_shot_demos_drawn"] == "random"
    assert entry["settings"]["support_size"] == 200
    assert list(scratch.iterdir()) == []  # the rendered world and its RICES features are gone
    with pytest.raises(SystemExit):
        main(["demo", "--demos", "nearest"])
