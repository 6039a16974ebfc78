"""The model card's account of how the model was made follows the recipe's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamingo_vlm.tinyworld.card import _clip_stage_line, read_card_facts


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


def test_a_card_with_two_facts_blocks_is_rejected(tmp_path: Path) -> None:
    one = "# card\n\n## Facts\n\n```json\n{\"a\": 1}\n```\n"
    card = tmp_path / "MODEL_CARD.md"
    card.write_text(one)
    assert read_card_facts(card) == {"a": 1}
    card.write_text(one + "\n## Notes\n\nmore\n\n" + one.replace("1", "2"))
    with pytest.raises(ValueError, match="2 ```json facts blocks"):
        read_card_facts(card)
