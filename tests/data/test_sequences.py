"""Sequence building and collation: the paper's layouts, label masking, windows, and a real forward pass."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from flamingo_vlm.data import (
    IGNORE_INDEX,
    InterleavedSample,
    PairSample,
    SequenceBuilder,
    TextSample,
    TrainingExample,
    VideoSample,
    collate,
    decode_sample,
    pack_examples,
    sample_frame_indices,
)
from flamingo_vlm.training.trainer import token_nll_sum
from tests.data.helpers import encode, image_array, tiny_processor
from tests.model.helpers import build
from tests.tiny_backbones import CORPUS

PROCESSOR = tiny_processor()
TOKENIZER = PROCESSOR.tokenizer
MEDIA, EOC = PROCESSOR.media_token_id, PROCESSOR.end_of_chunk_token_id
BOS, EOS = TOKENIZER.bos_token_id, TOKENIZER.eos_token_id


def _builder(seed: int = 0, processor=PROCESSOR, **kwargs) -> SequenceBuilder:
    return SequenceBuilder(processor, rng=random.Random(seed), **kwargs)


def _solid(index: int) -> Image.Image:
    """An image whose index can be read back from its preprocessed pixels."""
    return Image.new("RGB", (3, 3), (index * 7 % 256, index * 13 % 256, 100))


SOLID_KEYS = {round(float(PROCESSOR.image_processor.preprocess_media(_solid(i))[0, 0, 0, 0]), 4)
              * 1000 + round(float(PROCESSOR.image_processor.preprocess_media(_solid(i))[0, 1, 0, 0]), 4): i
              for i in range(12)}


def _image_index(pixels: torch.Tensor) -> int:
    return SOLID_KEYS[round(float(pixels[0, 0, 0]), 4) * 1000 + round(float(pixels[1, 0, 0]), 4)]


def _text(ids: list[int]) -> str:
    return TOKENIZER.decode(ids, skip_special_tokens=False)


def _check_labels(example: TrainingExample) -> None:
    """-100 exactly on BOS, the <image> tokens and everything up to the first <image>; elsewhere the token."""
    ids, labels = example.input_ids.tolist(), example.labels.tolist()
    first = ids.index(MEDIA)
    for position, (token, label) in enumerate(zip(ids, labels, strict=True)):
        ignored = position <= first or token == MEDIA
        assert label == (IGNORE_INDEX if ignored else token), (position, token, label)


# ---------------------------------------------------------------------- pairs and videos


def test_pair_layout_is_bos_image_text_eoc_eos() -> None:
    example = _builder(leading_space_prob=0.0).pair(PairSample("k", _solid(0), "a red circle."))
    ids = example.input_ids.tolist()
    text_ids = TOKENIZER("a red circle.", add_special_tokens=False)["input_ids"]
    assert ids == [BOS, MEDIA, *text_ids, EOC, EOS]
    assert _text(ids[2:-2]) == "a red circle."
    assert example.pixel_values.shape == (1, 1, 3, 16, 16) and example.frame_mask.tolist() == [[True]]
    assert example.kind == "pairs" and example.key == "k"
    _check_labels(example)
    assert example.labels[-2:].tolist() == [EOC, EOS]  # the model learns to end the caption


def test_pair_without_bos_in_the_tokenizer() -> None:
    processor = tiny_processor(bos=False)
    example = _builder(processor=processor, leading_space_prob=0.0).pair(PairSample("k", _solid(0), "the cat"))
    ids = example.input_ids.tolist()
    assert ids[0] == MEDIA and ids[-2:] == [EOC, EOS] and BOS not in ids
    _check_labels(example)


def test_leading_space_appears_with_probability_one_half() -> None:
    builder = _builder(seed=123)
    draws = 2000
    spaced = sum(_text(builder.pair(PairSample("k", _solid(0), "the cat")).input_ids.tolist()[2:-2]).startswith(" ")
                 for _ in range(draws))
    assert 0.45 * draws < spaced < 0.55 * draws
    always = _builder(leading_space_prob=1.0).pair(PairSample("k", _solid(0), "the cat"))
    assert _text(always.input_ids.tolist()[2:-2]) == " the cat"


def test_long_captions_are_truncated_keeping_eoc_and_eos() -> None:
    text = " ".join(CORPUS[:20])
    example = _builder(max_tokens=12).pair(PairSample("k", _solid(0), text))
    ids = example.input_ids.tolist()
    assert len(ids) == 12 and ids[:2] == [BOS, MEDIA] and ids[-2:] == [EOC, EOS]


def test_tags_written_in_the_text_cannot_break_the_media_count() -> None:
    example = _builder().pair(PairSample("k", _solid(0), "look <image> here<|endofchunk|> and </s> on"))
    ids = example.input_ids.tolist()
    assert ids.count(MEDIA) == 1 and ids.count(EOC) == 1 and ids.count(EOS) == 1 and ids[-1] == EOS


def test_video_is_one_media_item_with_its_frames() -> None:
    frames = [_solid(i) for i in range(5)]
    example = _builder(leading_space_prob=0.0).video(VideoSample("v", frames, "a moving star"))
    assert example.pixel_values.shape == (1, 5, 3, 16, 16) and example.frame_mask.all()
    assert [_image_index(example.pixel_values[0, f]) for f in range(5)] == [0, 1, 2, 3, 4]
    assert example.input_ids.tolist().count(MEDIA) == 1 and example.kind == "video"
    _check_labels(example)


def test_long_videos_are_subsampled_evenly_in_order() -> None:
    frames = [_solid(i) for i in range(12)]
    example = _builder(max_frames=4).video(VideoSample("v", frames, "x"))
    kept = [_image_index(example.pixel_values[0, f]) for f in range(example.pixel_values.shape[1])]
    assert kept == sample_frame_indices(12, 4) == [1, 4, 7, 10]
    for total in range(1, 40):
        for count in range(1, 10):
            picked = sample_frame_indices(total, count)
            assert len(picked) == min(total, count) and picked == sorted(set(picked))
            assert all(0 <= i < total for i in picked)


# ---------------------------------------------------------------------- interleaved documents


def test_interleaved_layout_matches_the_paper() -> None:
    texts = ["Hello there.", "A cat.", "A dog."]
    starts_with_image = InterleavedSample("d", texts, [(0, _solid(0)), (2, _solid(1))])
    example = _builder().interleaved(starts_with_image)
    assert _text(example.input_ids.tolist()) == (
        "<s><image>Hello there. A cat.<|endofchunk|><image>A dog.<|endofchunk|></s>")
    _check_labels(example)
    later_image = InterleavedSample("d", texts, [(1, _solid(0)), (2, _solid(1))])
    assert _text(_builder().interleaved(later_image).input_ids.tolist()) == (
        "<s>Hello there.<|endofchunk|><image>A cat.<|endofchunk|><image>A dog.<|endofchunk|></s>")


def test_images_beyond_max_media_are_removed_with_their_tags() -> None:
    texts = [f"Sentence {i}." for i in range(8)]
    sample = InterleavedSample("d", texts, [(i, _solid(i)) for i in range(8)])
    example = _builder(max_media=3, max_tokens=256).interleaved(sample)
    ids = example.input_ids.tolist()
    assert ids.count(MEDIA) == 3 == example.num_media
    assert [_image_index(example.pixel_values[m, 0]) for m in range(3)] == [0, 1, 2]
    # One EOC before each kept non-initial image and one at the end: no dangling chunk boundaries.
    assert ids.count(EOC) == 3
    assert _text(ids) == ("<s><image>Sentence 0.<|endofchunk|><image>Sentence 1.<|endofchunk|><image>Sentence 2. "
                          "Sentence 3. Sentence 4. Sentence 5. Sentence 6. Sentence 7.<|endofchunk|></s>")


def test_window_always_holds_the_only_image_even_late_in_the_document() -> None:
    texts = [CORPUS[i % 7] for i in range(40)]
    sample = InterleavedSample("d", texts, [(35, _solid(3))])
    starts = set()
    for seed in range(30):
        example = _builder(seed=seed, max_tokens=32).interleaved(sample)
        ids = example.input_ids.tolist()
        assert len(ids) == 32 and ids.count(MEDIA) == 1 and ids.index(MEDIA) < 31
        starts.add(_text(ids[1:4]))
    assert len(starts) > 5  # the window start is random, not pinned to the image


def _random_document(rng: random.Random) -> InterleavedSample:
    sentences = [" ".join(rng.choice(CORPUS).split()[: rng.randint(1, 8)]) for _ in range(rng.randint(1, 12))]
    if rng.random() < 0.2:
        sentences[rng.randrange(len(sentences))] = "  "  # blank sentences keep their images
    images = sorted(((rng.randrange(len(sentences)), _solid(i)) for i in range(rng.randint(1, 9))),
                    key=lambda item: item[0])
    # Indices of _solid follow document order so kept images can be checked for contiguity.
    images = [(index, _solid(order)) for order, (index, _) in enumerate(images)]
    if not any(s.strip() for s in sentences):
        sentences[0] = "the end"
    return InterleavedSample("d", sentences, images)


@pytest.mark.parametrize("bos", [True, False])
def test_interleaved_invariants_over_random_documents(bos: bool) -> None:
    processor = PROCESSOR if bos else tiny_processor(bos=False)
    offset = 1 if bos else 0
    rng = random.Random(7)
    for trial in range(300):
        sample = _random_document(rng)
        max_tokens, max_media = rng.randint(5, 48), rng.randint(1, 5)
        builder = _builder(seed=trial, processor=processor, max_tokens=max_tokens, max_media=max_media)
        example = builder.interleaved(sample)
        ids = example.input_ids.tolist()
        m = example.num_media
        assert ids.count(MEDIA) == m and 1 <= m <= max_media, (trial, ids)
        assert len(ids) <= max_tokens and example.labels.shape == example.input_ids.shape
        assert example.pixel_values.shape == (m, 1, 3, 16, 16) and example.frame_mask.shape == (m, 1)
        assert (ids[0] == BOS) == bos
        # Every <image> follows an <|endofchunk|>, unless it opens the document or the window.
        for position, token in enumerate(ids):
            if token == MEDIA and position != offset:
                assert ids[position - 1] == EOC, (trial, _text(ids))
        assert ids[-1] != MEDIA  # an image always conditions at least one token
        kept = [_image_index(example.pixel_values[i, 0]) for i in range(m)]
        assert kept == list(range(kept[0], kept[0] + m))  # the first images of a contiguous window
        _check_labels(example)
        whole = builder._document_tokens(sample)[0]
        if len(whole) + offset <= max_tokens and len(sample.images) <= max_media:
            assert ids[offset:] == whole and ids[-2:] == [EOC, EOS]


def test_same_seed_same_example() -> None:
    sample = InterleavedSample("d", [CORPUS[i % 7] for i in range(30)], [(3, _solid(0)), (20, _solid(1))])
    first = _builder(seed=5, max_tokens=24).interleaved(sample).input_ids
    again = _builder(seed=5, max_tokens=24).interleaved(sample).input_ids
    assert torch.equal(first, again)


def test_builder_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        _builder(max_tokens=4)
    with pytest.raises(ValueError, match="max_media"):
        _builder(max_media=0)
    with pytest.raises(ValueError, match="leading_space_prob"):
        _builder(leading_space_prob=1.5)


# ---------------------------------------------------------------------- text documents


def test_text_document_is_a_window_of_its_tokens_all_predicted_with_no_media() -> None:
    text = " ".join(f"word{i} <|endofchunk|>" if i % 5 == 4 else f"word{i}" for i in range(200))
    whole = [t for t in TOKENIZER(text, add_special_tokens=False)["input_ids"]] + [EOS]
    assert EOC in whole  # the chunk separators a text writes are kept as <|endofchunk|>
    starts = set()
    for seed in range(6):
        example = _builder(seed, max_tokens=24)(TextSample("t", text))
        ids = example.input_ids.tolist()
        assert len(ids) == 24 and ids[0] == BOS and example.kind == "text" and example.num_media == 0
        start = next(i for i in range(len(whole)) if whole[i:i + 23] == ids[1:])  # a contiguous slice
        starts.add(start)
        assert example.labels.tolist() == [IGNORE_INDEX, *ids[1:]]  # everything after BOS is predicted
    assert len(starts) > 1  # the window moves with the draw
    short = _builder(0, max_tokens=64)(TextSample("s", "a red circle. <image> two stars."))
    ids = short.input_ids.tolist()
    assert ids[0] == BOS and ids[-1] == EOS and MEDIA not in ids  # a literal <image> cannot add a media slot
    assert _text(ids[1:-1]).replace("  ", " ") == "a red circle. two stars."


# ---------------------------------------------------------------------- collate and the model


def _mixed_examples(builder: SequenceBuilder) -> list[TrainingExample]:
    return [
        builder.pair(PairSample("p", _solid(0), "a red circle on a gray background.")),
        builder.video(VideoSample("v", [_solid(i) for i in range(3)], "two yellow triangles.")),
        builder.interleaved(InterleavedSample("i", ["the cat sat.", "on the mat.", "how many circles?"],
                                              [(0, _solid(4)), (2, _solid(5))])),
    ]


def test_collate_pads_right_and_concatenates_media_in_row_order() -> None:
    examples = _mixed_examples(_builder())
    batch = collate(examples, TOKENIZER.pad_token_id)
    lengths = [e.input_ids.shape[0] for e in examples]
    assert set(batch) == {"input_ids", "attention_mask", "labels", "pixel_values", "frame_mask"}
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (3, max(lengths))
    for row, (example, length) in enumerate(zip(examples, lengths, strict=True)):
        assert batch["attention_mask"][row].tolist() == [1] * length + [0] * (max(lengths) - length)
        assert torch.equal(batch["input_ids"][row, :length], example.input_ids)
        assert (batch["input_ids"][row, length:] == TOKENIZER.pad_token_id).all()
        assert torch.equal(batch["labels"][row, :length], example.labels)
        assert (batch["labels"][row, length:] == IGNORE_INDEX).all()
    assert batch["pixel_values"].shape == (4, 3, 3, 16, 16)
    assert batch["frame_mask"].tolist() == [[True, False, False], [True] * 3, [True, False, False],
                                            [True, False, False]]
    assert [_image_index(batch["pixel_values"][n, 0]) for n in range(4)] == [0, 0, 4, 5]
    assert _image_index(batch["pixel_values"][1, 2]) == 2
    assert (batch["pixel_values"][0, 1:] == 0).all()  # padded frames are zeros
    assert int((batch["input_ids"] == MEDIA).sum()) == batch["pixel_values"].shape[0]


def test_collate_rounds_the_length_up_to_a_multiple_without_passing_max_length() -> None:
    examples = _mixed_examples(_builder())
    longest = max(e.input_ids.shape[0] for e in examples)
    exact = collate(examples, TOKENIZER.pad_token_id)
    for multiple, max_length, expected in [(16, None, -(-longest // 16) * 16), (16, longest + 1, longest + 1),
                                           (16, longest - 5, longest), (1, None, longest)]:
        batch = collate(examples, TOKENIZER.pad_token_id, pad_to_multiple_of=multiple, max_length=max_length)
        assert batch["input_ids"].shape == (3, expected), (multiple, max_length)
        # The rows' own tokens are untouched; every added position is padding, unattended and unlabelled.
        for key, fill in (("input_ids", TOKENIZER.pad_token_id), ("attention_mask", 0), ("labels", IGNORE_INDEX)):
            assert torch.equal(batch[key][:, :longest], exact[key]), key
            assert (batch[key][:, longest:] == fill).all(), key
        assert torch.equal(batch["pixel_values"], exact["pixel_values"])
    assert expected == longest and longest % 16 != 0  # the cases above did pad
    with pytest.raises(ValueError, match="pad_to_multiple_of must be >= 1"):
        collate(examples, TOKENIZER.pad_token_id, pad_to_multiple_of=0)


def test_packed_row_is_its_windows_one_after_another() -> None:
    rng = random.Random(3)
    builder = _builder(max_tokens=30, max_media=3)
    windows = [builder.interleaved(_random_document(rng)) for _ in range(4)]
    row = pack_examples(windows)
    ids = row.input_ids.tolist()
    assert ids == [token for w in windows for token in w.input_ids.tolist()]
    assert ids.count(BOS) == 4 and ids[0] == BOS and len(ids) <= 4 * 30
    assert row.num_media == ids.count(MEDIA) == sum(w.num_media for w in windows)
    kept = [_image_index(row.pixel_values[i, 0]) for i in range(row.num_media)]
    assert kept == [_image_index(w.pixel_values[i, 0]) for w in windows for i in range(w.num_media)]
    # Each window keeps its own label masking: BOS and its text before its first image predict nothing.
    start = 0
    for window in windows:
        part = TrainingExample(row.input_ids[start:start + len(window.input_ids)],
                               row.labels[start:start + len(window.input_ids)], window.pixel_values,
                               window.frame_mask, "interleaved", "w")
        _check_labels(part)
        start += len(window.input_ids)
    assert row.key == "+".join(w.key for w in windows)
    with pytest.raises(ValueError, match="at least one"):
        pack_examples([])
    video = builder.video(VideoSample("v", [_solid(i) for i in range(3)], "two yellow triangles."))
    with pytest.raises(ValueError, match="frame counts"):
        pack_examples([windows[0], video])


def test_collate_without_media_has_no_pixel_keys() -> None:
    example = TrainingExample(input_ids=torch.tensor([5, 6, 7]), labels=torch.tensor([-100, 6, 7]),
                              pixel_values=torch.zeros(0, 1, 3, 16, 16), frame_mask=torch.zeros(0, 1, dtype=torch.bool),
                              kind="pairs", key="t")
    batch = collate([example], pad_token_id=0)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    with pytest.raises(ValueError):
        collate([], pad_token_id=0)


def test_shard_bytes_to_a_finite_loss_through_the_model(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    builder = SequenceBuilder(model.processor, max_tokens=40, rng=random.Random(0))
    raws = {
        "pairs": {"__key__": "p", "png": encode(image_array(1)), "txt": b"a red circle."},
        "video": {"__key__": "v", "txt": b"a small blue star.", **{f"frame{i:03d}.png": encode(image_array(i))
                                                                  for i in range(3)}},
        "interleaved": {"__key__": "i", "img0.png": encode(image_array(7)), "img1.png": encode(image_array(8)),
                        "json": b'{"text_list": ["the cat sat on the mat.", "Output: two yellow triangles."],'
                                b' "image_info": [{"image_name": "img0.png", "matched_text_index": 0},'
                                b' {"image_name": "img1.png", "matched_text_index": 1}]}'},
        "text": {"__key__": "t", "txt": b"a pink heart. this is a stet.<|endofchunk|>a pink heart. this is a"},
    }
    examples = [builder(decode_sample(kind, raw, max_images=5)) for kind, raw in raws.items()]
    batch = collate(examples, model.tokenizer.pad_token_id)
    model.train()
    output = model(**batch)
    assert output.loss is not None and torch.isfinite(output.loss)
    output.loss.backward()
    assert model.new_tokens.input_rows.grad is not None
    assert int((batch["input_ids"] == model.media_token_id).sum()) == batch["pixel_values"].shape[0] == 4
    assert batch["frame_mask"].sum(1).tolist() == [1, 3, 1, 1]
    assert np.isfinite(output.logits.detach().numpy()).all()
    # Padding a batch further (pad_to_multiple_of) changes no token's loss: the same summed NLL and count.
    model.eval()
    sums = []
    for multiple in (1, 64):
        padded = collate(examples, model.tokenizer.pad_token_id, pad_to_multiple_of=multiple)
        with torch.no_grad():
            sums.append(token_nll_sum(model, padded))
    assert padded["input_ids"].shape[1] == 64 > batch["input_ids"].shape[1]
    assert int(sums[0][1]) == int(sums[1][1]) > 0
    assert float(sums[1][0]) == pytest.approx(float(sums[0][0]), rel=1e-5)
    model.train()
    # A batch of text documents alone (no pixel_values) trains the gated dense layers too.
    model.zero_grad()
    text_batch = collate([examples[-1]], model.tokenizer.pad_token_id)
    assert "pixel_values" not in text_batch
    gates = [b.ffw_gate for b in model.modules() if getattr(b, "ffw_gate", None) is not None]
    model(**text_batch).loss.backward()
    assert gates and all(g.grad is not None and float(g.grad.abs()) > 0 for g in gates)
