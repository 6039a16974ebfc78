"""The model card's account of how the model was made follows the recipe's settings."""

from __future__ import annotations

from flamingo_vlm.tinyworld.card import _clip_stage_line


def test_clip_stage_line_names_each_kind_of_negative_caption_in_use() -> None:
    resnet = {"vision_architecture": "resnet", "resnet_widths": [32, 64, 128]}
    assert "negative" not in _clip_stage_line(resnet) and "against" not in _clip_stage_line(resnet)
    shape_only = _clip_stage_line({**resnet, "shape_negatives": 3})
    assert "3 copies of its caption with one shape word swapped" in shape_only and "mirrored" not in shape_only
    both = _clip_stage_line({**resnet, "shape_negatives": 1, "spatial_negatives": 2})
    assert "1 copy of its caption with one shape word swapped and 2 copies of its caption with one position or " \
           "relation phrase mirrored" in both
