"""The model card's account of how the model was made follows the recipe's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingo_vlm.tinyworld.card import (
    _bare_lm_recall,
    _clip_stage_line,
    _flamingo_stage_lines,
    _lm_stage_line,
    read_card_facts,
)


def test_clip_stage_line_names_each_kind_of_negative_caption_in_use() -> None:
    resnet = {"vision_architecture": "resnet", "resnet_widths": [32, 64, 128]}
    assert "negative" not in _clip_stage_line(resnet) and "against" not in _clip_stage_line(resnet)
    shape_only = _clip_stage_line({**resnet, "shape_negatives": 3})
    assert "3 copies of its caption with one shape word swapped" in shape_only and "mirrored" not in shape_only
    both = _clip_stage_line({**resnet, "shape_negatives": 1, "spatial_negatives": 2})
    assert "1 copy of its caption with one shape word swapped and 2 copies of its caption with one position or " \
           "relation phrase mirrored" in both
    assert "gray" not in both
    assert "25% of each batch shown in gray against its caption without colour words" in \
        _clip_stage_line({**resnet, "shape_negatives": 3, "colourless_fraction": 0.25})


def test_stage_lines_say_how_long_and_how_fast_each_backbone_trained() -> None:
    resnet = {"vision_architecture": "resnet", "resnet_widths": [32, 64, 128], "shape_negatives": 3}
    assert "image-text pairs (1600 steps, lr 0.001), each image also against 3 copies" in \
        _clip_stage_line({**resnet, "steps": 1600, "lr": 0.001})
    assert "steps" not in _clip_stage_line(resnet)  # a recipe.json that does not say is not made to
    lm = _lm_stage_line({"layers": 4, "width": 256, "steps": 2000, "lr": 0.002})
    assert lm == ("4. a small Llama (4 layers, width 256) trained on the world's text, full of in-context structure "
                  "(2000 steps, lr 0.002), frozen;")
    assert _lm_stage_line({}) == "4. a small Llama trained on the world's text, full of in-context structure, frozen;"


def test_flamingo_stage_lines_say_when_the_lms_own_text_was_in_the_mixture() -> None:
    stage = {"pairs_phase_steps": 1200, "pairs_phase_lr": 0.001, "steps": 700, "lr": 0.001,
             "datasets": [{"kind": "interleaved", "batch_size": 16}]}
    without = " ".join(_flamingo_stage_lines(stage))
    assert "video-text pairs (700 steps, lr 0.001, cosine);" in without and "own text" not in without
    stage["datasets"].append({"kind": "text", "batch_size": 4})
    assert "with the LM's own text throughout (4 documents a step, no image" in " ".join(_flamingo_stage_lines(stage))
    one_phase = " ".join(_flamingo_stage_lines({**stage, "pairs_phase_steps": 0}))
    assert "(700 steps), with the LM's own text throughout" in one_phase


def test_bare_lm_recall_is_set_beside_the_flamingos_when_the_recipe_recorded_it() -> None:
    assert _bare_lm_recall({}) == ""
    line = _bare_lm_recall({"lm_recall": {"adjacent": 0.69, "key_value": 0.2, "described": 0.984, "chance": 0.25}})
    assert line == ("; the frozen LM alone, before the Flamingo stage: after its key 69%, after `key:` 20%, a described "
                    "shape's name 98%")


def test_a_card_with_two_facts_blocks_is_rejected(tmp_path: Path) -> None:
    one = "# card\n\n## Facts\n\n```json\n{\"a\": 1}\n```\n"
    card = tmp_path / "MODEL_CARD.md"
    card.write_text(one)
    assert read_card_facts(card) == {"a": 1}
    card.write_text(one + "\n## Notes\n\nmore\n\n" + one.replace("1", "2"))
    with pytest.raises(ValueError, match="2 ```json facts blocks"):
        read_card_facts(card)
