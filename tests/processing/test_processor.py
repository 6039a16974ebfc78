"""FlamingoProcessor: prompt forms, batching, padding, media layout, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import random_image
from tests.model.helpers import build


@pytest.fixture(scope="module")
def processor(lm_dirs: dict[str, str], clip_dir: str):
    return build(lm_dirs["llama"], clip_dir).processor


def test_string_and_interleaved_list_forms_agree(processor) -> None:
    a, b = random_image(0), random_image(1)
    tagged = processor("<image>Output: a cat.<|endofchunk|><image>Output:", images=[a, b])
    inline = processor([a, "Output: a cat.<|endofchunk|>", b, "Output:"])
    assert torch.equal(tagged["input_ids"], inline["input_ids"])
    assert torch.equal(tagged["pixel_values"], inline["pixel_values"])
    assert tagged["pixel_values"].shape == (2, 1, 3, 32, 32)
    assert (tagged["input_ids"] == processor.media_token_id).sum() == 2
    assert (tagged["input_ids"] == processor.end_of_chunk_token_id).sum() == 1


def test_batches_pad_left_by_default_and_keep_media_order(processor) -> None:
    prompts = ["<image>short", "a much longer prompt <image> with <image> two images"]
    images = [[random_image(0)], [random_image(1), random_image(2)]]
    left = processor(prompts, images=images)
    right = processor(prompts, images=images, padding_side="right")
    assert left["input_ids"].shape == right["input_ids"].shape
    lengths = left["attention_mask"].sum(1)
    assert lengths[0] < lengths[1]
    assert left["attention_mask"][0, -1] == 1 and left["attention_mask"][0, 0] == 0
    assert right["attention_mask"][0, 0] == 1 and right["attention_mask"][0, -1] == 0
    # Media are flat, in row-major prompt order.
    single = processor("<image>", images=[random_image(1)])["pixel_values"][0]
    assert torch.equal(left["pixel_values"][1], single)
    batch_of_lists = processor([[random_image(0), "short"], ["text only"]])
    assert batch_of_lists["input_ids"].shape[0] == 2 and batch_of_lists["pixel_values"].shape[0] == 1


def test_inputs_accept_paths_arrays_and_videos(processor, tmp_path: Path) -> None:
    path = tmp_path / "img.png"
    random_image(3).save(path)
    array = np.asarray(random_image(3))
    from_path = processor("<image>", images=[str(path)])["pixel_values"]
    from_array = processor("<image>", images=[array])["pixel_values"]
    torch.testing.assert_close(from_path, from_array)
    video = processor(["<image>Video:", [random_image(i) for i in range(5)]][0], images=[[random_image(i) for i in range(5)]])
    assert video["pixel_values"].shape[:2] == (1, 5) and video["frame_mask"].all()
    inline_video = processor(["Video:", [random_image(i) for i in range(5)], "moves left"])
    assert inline_video["pixel_values"].shape[:2] == (1, 5)


def test_inputs_move_devices_and_cast_only_floats(processor) -> None:
    inputs = processor("<image>x", images=[random_image(0)]).to("cpu", dtype=torch.bfloat16)
    assert inputs["pixel_values"].dtype == torch.bfloat16 and inputs["input_ids"].dtype == torch.long


def test_decode_cuts_at_end_of_chunk(processor) -> None:
    ids = processor.tokenizer(" a red circle.<|endofchunk|> junk", add_special_tokens=False)["input_ids"]
    assert processor.batch_decode([ids]) == ["a red circle."]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p("<image><image>two tags", images=[random_image(0)]), "2 <image> tag\\(s\\) but 1"),
        (lambda p: p("no tags", images=[random_image(0)]), "0 <image> tag\\(s\\) but 1"),
        (lambda p: p("   "), "Prompt 0 is empty"),
        (lambda p: p("<image>", images=["/no/such/file.png"]), "/no/such/file.png"),
        (lambda p: p("<image>", images=[np.zeros((4, 4, 7), dtype=np.uint8)]), "prompt 0, media item 0"),
        (lambda p: p("<image>", images=[[random_image(0)] * 65]), "65 frames but the model supports at most 64"),
        (lambda p: p("word " * 600), "supports at most 512"),
        (lambda p: p(["a", "b"], images=[[random_image(0)]]), "list of 2 lists"),
        (lambda p: p([random_image(0), "x"], images=[random_image(0)]), "inline"),
        (lambda p: p("x", padding_side="middle"), "padding_side"),
        (lambda p: p([]), "non-empty list"),
    ],
)
def test_bad_inputs_get_clear_errors(processor, call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(processor)


def test_undecodable_image_file_is_named(processor, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="broken.jpg"):
        processor("<image>", images=[str(broken)])
