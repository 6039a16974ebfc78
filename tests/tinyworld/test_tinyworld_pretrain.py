"""The contrastive vision stage: shape-swapped and spatially mirrored negatives, the dual encoder's loss, and what the stage writes."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import CLIPTextModel, LlamaForCausalLM

from flamingo_vlm.backbones.vision import VisionEncoder, load_vision_tower
from flamingo_vlm.processing.images import ImageProcessor
from flamingo_vlm.tinyworld import Shape
from flamingo_vlm.tinyworld.scene import Colour
from flamingo_vlm.tinyworld.datasets import build_training_sets
from flamingo_vlm.tinyworld.pretrain import (PROBE_CURVE_FILE, ClipBatches, ClipSettings, LMSettings,
                                             _caption_tensors, _pairs, negative_captions, pretrain_clip, pretrain_lm,
                                             swap_shape_word, swap_spatial_phrase, to_gray, train_tokenizer,
                                             without_colour_words)

SHAPES = {s.value for s in Shape} | {s.plural for s in Shape}


def test_swap_shape_word_changes_exactly_one_shape_and_keeps_number() -> None:
    rng = random.Random(0)
    text = "two red crosses above a small blue circle"
    for _ in range(50):
        swapped = swap_shape_word(text, rng)
        changed = [(a, b) for a, b in zip(text.split(), swapped.split()) if a != b]
        assert len(swapped.split()) == len(text.split()) and len(changed) == 1  # nothing else touched
        old, new = changed[0]
        assert old in SHAPES and new in SHAPES and new != old
        assert (old in {s.plural for s in Shape}) == (new in {s.plural for s in Shape})  # "crosses" -> "stars"
    assert swap_shape_word("a red thing on a blue background", rng) is None
    assert swap_shape_word(text, random.Random(3)) == swap_shape_word(text, random.Random(3))


def _outcomes(text: str, draws: int = 60) -> set[str]:
    rng = random.Random(0)
    return {swap_spatial_phrase(text, rng) for _ in range(draws)}


def test_swap_spatial_phrase_mirrors_one_phrase_into_one_that_cannot_also_hold() -> None:
    # A corner may flip top/bottom, left/right or both; never to a cell that shares its word ("top" for "top left").
    assert _outcomes("a blue circle in the top left.") == {
        "a blue circle in the bottom left.", "a blue circle in the top right.", "a blue circle in the bottom right."}
    assert _outcomes("a star at the top") == {"a star at the bottom"}  # flipping left/right leaves "top" as it is
    assert _outcomes("a star on the right") == {"a star on the left"}
    centre = _outcomes("a star in the centre", draws=200)
    assert len(centre) == 8 and "a star in the centre" not in centre  # every other cell is clearly elsewhere
    assert _outcomes("The circle is to the left of the star.") == {"The circle is to the right of the star."}
    assert _outcomes("the cross is below the heart") == {"the cross is above the heart"}
    assert _outcomes("From left to right: a cross and a heart.") == {"From right to left: a cross and a heart."}
    two = _outcomes("a cross at the bottom and a heart above a star")
    assert two == {"a cross at the top and a heart above a star", "a cross at the bottom and a heart below a star"}
    assert swap_spatial_phrase("a red circle and a blue star on a green background", random.Random(0)) is None


def test_every_world_caption_that_says_where_gets_a_spatial_negative() -> None:
    """On real pair captions: every caption that says where something is gets a negative differing from it in one
    phrase (which phrases it may become is the test above); one that says nothing spatial gets none."""
    from flamingo_vlm.tinyworld.datasets import pair_sample, sample_rng

    rng, altered = random.Random(1), 0
    for index in range(300):
        _, text = pair_sample(sample_rng(0, 1, index))
        negative = swap_spatial_phrase(text, rng)
        if negative is None:
            assert not any(w in text.split() for w in ("left", "right", "top", "bottom", "centre", "above", "below"))
            continue
        altered += 1
        assert negative != text and len(negative.split()) - len(text.split()) in (-1, 0, 1)
    assert altered > 60  # about a third of the world's captions say where something is


def test_negative_captions_compete_only_for_their_image() -> None:
    from transformers import CLIPTextConfig, CLIPTextModel, ResNetConfig, ResNetModel

    from flamingo_vlm.tinyworld.pretrain import DualEncoder

    torch.manual_seed(0)
    vision = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[16], depths=[1], layer_type="basic"))
    text = CLIPTextModel(CLIPTextConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=8, eos_token_id=2))
    model = DualEncoder(vision, text, 16, 8).eval()
    pixels = torch.randn(3, 3, 32, 32)
    ids = torch.randint(3, 50, (5, 6))
    ids[:, -1] = 2
    mask = torch.ones_like(ids)
    with torch.no_grad():
        loss = model.loss(pixels, ids, mask)
        images, texts = model.image_embeds(pixels), model.text_embeds(ids, mask)
        logits = model.logit_scale.exp() * images @ texts.T  # (3 images, 3 captions + 2 negatives)
        target = torch.arange(3)
        expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, :3].T, target)) / 2
        without = model.loss(pixels, ids[:3], mask[:3])
    torch.testing.assert_close(loss, expected)
    assert loss > without  # the negatives make the image -> text choice harder, never easier
    # Captions of different lengths (each ends in EOS, then padding), encoded in length buckets: the same
    # embeddings as when all are padded together.
    for row, length in ((1, 3), (3, 2)):
        ids[row, length - 1], ids[row, length:], mask[row, length:] = 2, 0, 0
    with torch.no_grad():
        padded_together = model.text(input_ids=ids, attention_mask=mask).pooler_output  # input order, no buckets
        expected = F.normalize(model.text_projection(padded_together).float(), dim=-1)
        torch.testing.assert_close(model.text_embeds(ids, mask, buckets=3), expected)


@pytest.fixture(scope="module")
def pairs_and_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("clip")
    paths = build_training_sets(root / "data", seed=2, image_size=32, samples_per_shard=10, progress=False,
                                num_pairs=24, num_videos=2, num_documents=4)
    texts = [text for _, text in _pairs(paths["pairs"])]
    return paths["pairs"], train_tokenizer(texts, root / "tokenizer", vocab_size=300)


def test_no_caption_is_its_own_negative(pairs_and_tokenizer) -> None:
    _, tokenizer = pairs_and_tokenizer
    texts = ["a red circle", "a blue thing on a green background", "on a very long green background, a star"]
    ids, _ = _caption_tensors(tokenizer, texts, 6)  # the third caption's shape word is cut off
    for neg_ids, neg_mask, valid in negative_captions(tokenizer, texts, ids, 3, random.Random(0)):
        assert valid.tolist() == [True, False, False]
        assert (neg_ids[0] != ids[0]).any() and neg_mask.shape == ids.shape
    texts = ["a red circle on the left", "a blue circle", "on a very long green background, a star on the left"]
    ids, _ = _caption_tensors(tokenizer, texts, 14)
    for _, _, valid in negative_captions(tokenizer, texts, ids, 2, random.Random(0), swap=swap_spatial_phrase):
        assert valid.tolist() == [True, False, False]  # nothing to mirror; the mirrored phrase is cut off


@pytest.mark.parametrize("architecture, tokens", [("resnet", 16), ("vit", 16)])
def test_clip_stage_writes_a_vision_tower_flamingo_can_load(pairs_and_tokenizer, architecture: str, tokens: int,
                                                            tmp_path: Path) -> None:
    pattern, tokenizer = pairs_and_tokenizer
    settings = ClipSettings(image_size=32, vision_architecture=architecture, resnet_widths=[8, 12, 16],
                            resnet_depths=[1, 1], vision_width=16, vision_layers=1, text_width=16, text_layers=1,
                            heads=2, projection_dim=8, batch_size=6, shape_negatives=2, spatial_negatives=1, steps=2,
                            warmup_steps=1)
    out = pretrain_clip(pattern, tokenizer, tmp_path / "clip", settings, progress=False)
    tower = load_vision_tower(out / "vision")
    processor = ImageProcessor.from_vision_folder(out / "vision")
    assert processor.image_size == 32
    features = VisionEncoder(tower, image_size=processor.image_size)(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, tokens, 16)  # resnet: 32px / 4 (stem) / 2 (stage 2) = 4x4 cells; vit: (32 / 8)^2 patches
    assert (out / "projections.safetensors").is_file() and (out / "text" / "config.json").is_file()


def test_clip_text_tower_attends_eagerly_and_masks_as_the_sdpa_kernel_does(
        pairs_and_tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage builds its text tower with eager attention (far faster backwards in bf16 on a CPU than the sdpa
    kernel for short captions); it must mask the padding and the future exactly as the kernel does."""
    pattern, tokenizer = pairs_and_tokenizer
    settings = ClipSettings(image_size=32, resnet_widths=[8, 12, 16], text_width=16, text_layers=2, heads=2,
                            projection_dim=8, batch_size=6, steps=2, warmup_steps=1)
    implementations: list[str] = []

    class RecordingTextModel(CLIPTextModel):
        def __init__(self, config) -> None:
            super().__init__(config)
            implementations.append(self.config._attn_implementation)

    monkeypatch.setattr("flamingo_vlm.tinyworld.pretrain.CLIPTextModel", RecordingTextModel)
    out = pretrain_clip(pattern, tokenizer, tmp_path / "clip", settings, progress=False)
    assert implementations == ["eager"]
    eager = CLIPTextModel.from_pretrained(out / "text", attn_implementation="eager")
    sdpa = CLIPTextModel.from_pretrained(out / "text", attn_implementation="sdpa")
    ids, mask = _caption_tensors(tokenizer, ["a red circle", "a small blue star on a green background"], 40)
    assert mask.sum(1).tolist()[0] < mask.sum(1).tolist()[1] < 40  # both padded, by different amounts
    with torch.no_grad():
        ours = eager(input_ids=ids, attention_mask=mask)
        kernel = sdpa(input_ids=ids, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(ours.last_hidden_state[real], kernel.last_hidden_state[real])
    torch.testing.assert_close(ours.pooler_output, kernel.pooler_output)


@pytest.mark.parametrize("asked, bf16_slower, autocast_on", [("bf16", True, True), ("fp32", False, False),
                                                              ("auto", True, False), ("auto", False, True)])
def test_the_clip_and_lm_stages_compute_in_the_precision_they_are_given(
        pairs_and_tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asked: str, bf16_slower: bool,
        autocast_on: bool) -> None:
    pattern, tokenizer = pairs_and_tokenizer
    # auto: as if on a CPU whose bf16 matmuls are (or are not) clearly slower than fp32.
    monkeypatch.setattr("flamingo_vlm.training.cpu_precision.bf16_slower_note",
                        lambda *_: "bf16 is slow here" if bf16_slower else None)
    stages_autocast: list[bool] = []
    real_autocast = torch.autocast

    def recording_autocast(device_type: str, dtype: torch.dtype | None = None, enabled: bool = True, **kwargs):
        if dtype == torch.bfloat16:  # the stage's own autocast (the models inside open fp32-only regions too)
            stages_autocast.append(enabled)
        return real_autocast(device_type, dtype=dtype, enabled=enabled, **kwargs)

    monkeypatch.setattr(torch, "autocast", recording_autocast)
    clip = ClipSettings(image_size=32, resnet_widths=[8, 12, 16], text_width=16, text_layers=1, heads=2,
                        projection_dim=8, batch_size=6, steps=2, warmup_steps=1, precision=asked)
    pretrain_clip(pattern, tokenizer, tmp_path / "clip", clip, progress=False)
    lm = LMSettings(width=16, layers=1, heads=2, sequence_length=16, batch_size=2, steps=2, warmup_steps=1,
                    precision=asked)
    pretrain_lm(["a red circle on a blue background."] * 8, tokenizer, tmp_path / "lm", lm, progress=False)
    assert stages_autocast == [autocast_on] * 4  # two CLIP steps, two LM steps


def test_lm_stage_probes_along_the_way_without_changing_the_training(pairs_and_tokenizer, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, tokenizer = pairs_and_tokenizer
    corpus = ["a red circle on a blue background.", "two green stars left of a square."] * 8
    seen: list[tuple[bool, bool]] = []
    training_forwards: list[bool] = []  # every training step's forward: in train mode again after a probe

    class RecordingLlama(LlamaForCausalLM):
        def forward(self, *args, **kwargs):
            training_forwards.append(self.training)
            return super().forward(*args, **kwargs)

    monkeypatch.setattr("flamingo_vlm.tinyworld.pretrain.LlamaForCausalLM", RecordingLlama)

    def probe(lm: torch.nn.Module) -> dict[str, float]:
        seen.append((lm.training, torch.is_grad_enabled()))
        return {"first_weight": float(next(lm.parameters()).flatten()[0])}

    def run(folder: str, probe_every: int) -> dict[str, torch.Tensor]:
        lm = LMSettings(width=16, layers=1, heads=2, sequence_length=16, batch_size=2, steps=5, warmup_steps=1,
                        precision="fp32", probe_every=probe_every)
        pretrain_lm(corpus, tokenizer, tmp_path / folder, lm, progress=False, probe=probe)
        return load_file(str(tmp_path / folder / "model.safetensors"))

    plain = run("plain", 0)  # probe_every 0: the probe is never called
    assert seen == [] and not (tmp_path / "plain" / PROBE_CURVE_FILE).exists()
    probed = run("probed", 2)
    assert seen == [(False, False)] * 3  # steps 2, 4 and the last, in eval mode without gradients
    assert training_forwards == [True] * 10  # the probe makes no forward pass of its own
    curve = json.loads((tmp_path / "probed" / PROBE_CURVE_FILE).read_text())
    assert [point["step"] for point in curve] == [2, 4, 5] and all(point["loss"] > 0 for point in curve)
    assert len({point["first_weight"] for point in curve}) == 3  # scored as it trained, not once
    assert plain.keys() == probed.keys() and all(torch.equal(plain[k], probed[k]) for k in plain)


def test_clip_stage_rejects_mismatched_resnet_settings(pairs_and_tokenizer, tmp_path: Path) -> None:
    pattern, tokenizer = pairs_and_tokenizer
    with pytest.raises(ValueError, match="resnet_widths needs one entry for the stem"):
        pretrain_clip(pattern, tokenizer, tmp_path, ClipSettings(image_size=32, resnet_widths=[8, 16],
                                                                 resnet_depths=[1, 1], steps=1), progress=False)
    with pytest.raises(ValueError, match="'resnet' or 'vit'"):
        pretrain_clip(pattern, tokenizer, tmp_path, ClipSettings(image_size=32, vision_architecture="cnn", steps=1),
                      progress=False)


def test_colourless_captions_keep_every_other_word(pairs_and_tokenizer) -> None:
    pattern, _ = pairs_and_tokenizer
    colours = {c.value for c in Colour}
    for _, text in _pairs(pattern):
        plain = without_colour_words(text)
        words, plain_words = re.findall(r"[a-z]+", text.lower()), re.findall(r"[a-z]+", plain.lower())
        assert not colours & set(plain_words)
        assert plain_words == [w for w in words if w not in colours]
    assert without_colour_words("A red circle left of a speckled white background.") == \
        "A circle left of a speckled background."


def test_to_gray_puts_luma_in_every_channel() -> None:
    pixels = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]).view(2, 3, 1, 1)  # a red and a white pixel
    gray = to_gray(pixels)
    torch.testing.assert_close(gray.flatten(1), torch.tensor([[0.299] * 3, [1.0] * 3]))


@pytest.mark.parametrize("fraction, gray", [(0.0, 0), (0.5, 2)])
def test_clip_batches_show_their_first_rows_in_gray_against_colourless_captions(
        pairs_and_tokenizer, fraction: float, gray: int) -> None:
    pattern, tokenizer = pairs_and_tokenizer
    images, texts = zip(*_pairs(pattern))
    pixels = torch.from_numpy(np.stack(images))
    settings = ClipSettings(image_size=32, batch_size=4, shape_negatives=1, colourless_fraction=fraction,
                            max_text_tokens=256)  # no caption cut short
    processor = ImageProcessor(image_size=32)
    batches = ClipBatches(pixels, list(texts), tokenizer, settings, processor, random.Random(0))
    index = torch.tensor([3, 5, 7, 9])
    batch_pixels, ids, mask = batches(index)
    raw = batch_pixels * torch.tensor(processor.image_std).view(1, 3, 1, 1) + \
        torch.tensor(processor.image_mean).view(1, 3, 1, 1)  # back to [0, 1]
    for row, pair in enumerate(index.tolist()):
        is_gray = torch.allclose(raw[row, 0], raw[row, 1], atol=1e-5) and torch.allclose(raw[row, 1], raw[row, 2],
                                                                                          atol=1e-5)
        assert is_gray == (row < gray)
        caption = tokenizer.decode(ids[row][mask[row].bool()], skip_special_tokens=True)
        expected = without_colour_words(texts[pair]) if row < gray else texts[pair]
        assert caption.strip() == expected.strip()
    # Each pair whose caption names a shape has one negative: that caption (colourless where it is) with one shape
    # word swapped.
    has_negative = batches.negatives[0][2][index + batches.caption_offset]
    rows = [row for row in range(len(index)) if has_negative[row]]
    assert rows and len(rows) == ids.shape[0] - len(index)
    for row, negative in zip(rows, ids[len(index):], strict=True):
        words = tokenizer.decode(negative[negative != tokenizer.pad_token_id], skip_special_tokens=True).split()
        pair = int(index[row])
        expected = (without_colour_words(texts[pair]) if row < gray else texts[pair]).split()
        changed = [(a, b) for a, b in zip(words, expected, strict=True) if a != b]
        assert len(changed) == 1 and changed[0][0].strip(".,") in SHAPES
