"""Invariants of the fused model, for every supported LM family (tiny backbones loaded from temp folders)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from flamingo_vlm import Flamingo
from flamingo_vlm.model.cross_attention import MediaContext
from flamingo_vlm.model.fusion import FlamingoDecoderLayer
from tests.conftest import random_image
from tests.model.helpers import build, open_gates
from tests.tiny_backbones import FAMILIES

TEXT = "Question: what colour is the star? Answer: blue"


@pytest.mark.parametrize("family", FAMILIES)
def test_gates_at_zero_reproduce_the_frozen_lm(family: str, lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs[family], clip_dir)
    plain = AutoModelForCausalLM.from_pretrained(lm_dirs[family], attn_implementation="sdpa").eval()
    inputs = model.processor([TEXT, "a red circle."], padding_side="right")
    with torch.no_grad():
        ours = model(**inputs).logits
        reference = plain(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    vocab = reference.shape[-1]
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(ours[..., :vocab][real], reference[real], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_fusion_is_visible_and_keeps_lm_keys(family: str, lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs[family], clip_dir, cross_attn_every=2)
    wrappers = [m for m in model.lm.modules() if isinstance(m, FlamingoDecoderLayer)]
    assert len(wrappers) == 4 and "FlamingoDecoderLayer" in repr(model)
    assert [w.cross_attn_block is not None for w in wrappers] == [True, False, True, False]
    plain = AutoModelForCausalLM.from_pretrained(lm_dirs[family])
    lm_keys = set(plain.state_dict())
    fused_keys = set(model.lm.state_dict())
    assert lm_keys <= fused_keys
    assert all(".cross_attn_block." in k for k in fused_keys - lm_keys)
    # The LM's own checkpoint loads into the fused model unchanged (strictly, for its own keys).
    result = model.lm.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == [] and all(".cross_attn_block." in k for k in result.missing_keys)


def test_only_new_layers_and_new_token_rows_train(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for name, _ in model.named_parameters():
        is_new = name.startswith(("resampler.", "new_tokens.")) or ".cross_attn_block." in name
        assert (name in trainable) == is_new, name
    assert model.new_tokens.input_rows.shape[0] == 2
    gate_names = [n for n in trainable if n.endswith("_gate")]
    assert len(gate_names) == 2 * model.num_cross_attn_blocks and all("gate" in n for n in gate_names)

    # One optimiser step changes exactly the trainable tensors; the LM's vocabulary rows stay put.
    open_gates(model, 0.5).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    inputs = model.processor("<image>Output: a red circle.<|endofchunk|>", images=[random_image(0)])
    labels = inputs["input_ids"].clone()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(**inputs, labels=labels).loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable
    assert "new_tokens.input_rows" in changed and any(".cross_attn_block." in n for n in changed)
    assert any(n.startswith("resampler.") for n in changed)


def test_freeze_lm_off_trains_the_lm_too(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["gpt2"], clip_dir, freeze_lm=False)
    assert all(p.requires_grad for p in model.lm.parameters())
    assert not any(p.requires_grad for p in model.vision.parameters())


@pytest.mark.parametrize("family", ["llama", "gpt2", "opt"])
def test_image_causal_masking_at_model_level(family: str, lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = open_gates(build(lm_dirs[family], clip_dir))
    prompt = "a b c <image>Output: one.<|endofchunk|><image>Output: two"
    base = model.processor(prompt, images=[random_image(1), random_image(2)])
    other_second = model.processor(prompt, images=[random_image(1), random_image(9)])
    other_first = model.processor(prompt, images=[random_image(7), random_image(2)])
    ids = base["input_ids"][0]
    first_media = int((ids == model.media_token_id).nonzero()[0])
    second_media = int((ids == model.media_token_id).nonzero()[1])
    with torch.no_grad():
        logits = model(**base).logits[0]
        logits_second = model(**other_second).logits[0]
        logits_first = model(**other_first).logits[0]
    # Tokens before any media never see an image: bit-for-bit identical.
    assert torch.equal(logits[:first_media], logits_second[:first_media])
    assert torch.equal(logits[:first_media], logits_first[:first_media])
    # Tokens between the images do not see the second image...
    assert torch.equal(logits[:second_media], logits_second[:second_media])
    # ...and the tokens after the second image react to it.
    assert (logits[second_media:] - logits_second[second_media:]).abs().max() > 1e-4


def _first_block_output(model: Flamingo, inputs: dict) -> torch.Tensor:
    """Output of the first GATED XATTN-DENSE block alone (no self-attention mixing afterwards)."""
    latents = model.encode_media(inputs["pixel_values"], inputs["frame_mask"])
    routing = model.route(inputs["input_ids"], inputs["attention_mask"])
    hidden = model.new_tokens.embed(inputs["input_ids"], model.lm.get_input_embeddings())
    return model.cross_attn_blocks()[0](hidden, MediaContext(routing=routing, latents=latents))


@pytest.mark.parametrize("media_attention", ["last", "all_previous"])
def test_token_reads_its_own_image_and_not_earlier_ones(media_attention: str, lm_dirs: dict[str, str],
                                                         clip_dir: str) -> None:
    model = open_gates(build(lm_dirs["llama"], clip_dir, media_attention=media_attention))
    prompt = "<image>Output: one.<|endofchunk|><image>Output: two"
    base = model.processor(prompt, images=[random_image(1), random_image(2)])
    ids = base["input_ids"][0]
    second = int((ids == model.media_token_id).nonzero()[1])
    with torch.no_grad():
        out = _first_block_output(model, base)[0]
        own_changed = _first_block_output(model, model.processor(prompt, images=[random_image(1), random_image(5)]))[0]
        earlier_changed = _first_block_output(model, model.processor(prompt, images=[random_image(6), random_image(2)]))[0]
    assert (out[second:] - own_changed[second:]).abs().max() > 1e-4
    if media_attention == "last":
        torch.testing.assert_close(out[second:], earlier_changed[second:], atol=1e-6, rtol=0)
    else:
        assert (out[second:] - earlier_changed[second:]).abs().max() > 1e-4


def test_tokens_without_media_get_exact_zero_cross_attention(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = open_gates(build(lm_dirs["llama"], clip_dir, cross_attn_style="vanilla_xattn"))
    inputs = model.processor("text first <image>then the image", images=[random_image(0)])
    hidden = model.new_tokens.embed(inputs["input_ids"], model.lm.get_input_embeddings())
    with torch.no_grad():
        out = _first_block_output(model, inputs)
    media_at = int((inputs["input_ids"][0] == model.media_token_id).nonzero()[0])
    assert torch.equal(out[0, :media_at], hidden[0, :media_at])  # vanilla: xattn only, no dense branch
    assert not torch.isnan(out).any()
    assert (out[0, media_at:] - hidden[0, media_at:]).abs().max() > 1e-4


def test_p_next_links_text_to_the_following_image(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["llama"], clip_dir, p_next=0.5)
    inputs = model.processor("intro <image>one <image>two", images=[random_image(0), random_image(1)])
    ids = inputs["input_ids"]
    forward = model.route(ids, inputs["attention_mask"], link_to_next=torch.tensor([True]))
    media_positions = (ids[0] == model.media_token_id).nonzero().squeeze(1).tolist()
    local = forward.token_local[0].tolist()
    assert local[media_positions[0]] == 0 and local[media_positions[1]] == 1  # the tag belongs to its image
    assert all(v == 0 for v in local[: media_positions[0]])  # intro text reads the first (next) image
    assert all(v == -1 for v in local[media_positions[1] + 1:])  # nothing follows the last image
    # In training mode the draw happens per row; in eval mode never.
    model.train()
    torch.manual_seed(0)
    draws = [model(**inputs).logits for _ in range(2)]
    assert all(d.shape == draws[0].shape for d in draws)


def test_batch_rows_do_not_leak_into_each_other(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = open_gates(build(lm_dirs["qwen2"], clip_dir))
    prompts = ["<image>Output: a cat.<|endofchunk|><image>Output:", "no image here, just text", "<image>Q: hi"]
    images = [[random_image(1), random_image(2)], [], [random_image(3)]]
    batch = model.processor(prompts, images=images)
    with torch.no_grad():
        batched = model(**batch).logits
        for row, (prompt, media) in enumerate(zip(prompts, images)):
            single = model(**model.processor(prompt, images=media)).logits[0]
            length = single.shape[0]
            torch.testing.assert_close(batched[row, -length:], single, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["perceiver", "mlp", "transformer"])
def test_resampler_kinds_build_and_differ(kind: str, lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["llama"], clip_dir, resampler_type=kind)
    pixels = model.processor("<image>", images=[random_image(0)])["pixel_values"]
    assert model.encode_media(pixels).shape == (1, 4, model.vision.feature_dim)
    assert type(model.resampler).__name__.lower().startswith(kind)


def test_ablation_switches_change_the_model(lm_dirs: dict[str, str], clip_dir: str) -> None:
    default = build(lm_dirs["llama"], clip_dir)
    vanilla = build(lm_dirs["llama"], clip_dir, cross_attn_style="vanilla_xattn")
    ungated = build(lm_dirs["llama"], clip_dir, use_tanh_gating=False)
    grafted = build(lm_dirs["llama"], clip_dir, placement="grafted")
    every_other = build(lm_dirs["llama"], clip_dir, cross_attn_every=2)
    assert all(b.ffw is None for b in vanilla.cross_attn_blocks())
    assert vanilla.num_parameters()["cross_attn"] < default.num_parameters()["cross_attn"]
    assert not any("gate" in n for n, _ in ungated.named_parameters() if ".cross_attn_block." in n)
    assert every_other.num_cross_attn_blocks == 2 and default.num_cross_attn_blocks == 4
    wrappers = [m for m in grafted.lm.modules() if isinstance(m, FlamingoDecoderLayer)]
    assert [w.cross_attn_block is not None for w in wrappers] == [False, False, False, True]
    assert wrappers[-1].block_after and len(grafted.cross_attn_blocks()) == 4

    inputs = default.processor("plain text only")
    with torch.no_grad():
        reference = default(**inputs).logits
        assert torch.equal(grafted(**inputs).logits, reference)  # gated grafting also starts as the LM
        # Without tanh gates the dense branch acts from the start: the model is no longer the frozen LM.
        assert (ungated(**inputs).logits - reference).abs().max() > 1e-4


def test_grafted_blocks_read_media(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = open_gates(build(lm_dirs["llama"], clip_dir, placement="grafted"))
    prompt = "<image>Output:"
    with torch.no_grad():
        a = model(**model.processor(prompt, images=[random_image(0)])).logits
        b = model(**model.processor(prompt, images=[random_image(4)])).logits
    assert (a - b).abs().max() > 1e-4


def test_unknown_lm_family_names_decoder_layers_option(lm_dirs: dict[str, str], clip_dir: str) -> None:
    lm = AutoModelForCausalLM.from_pretrained(lm_dirs["llama"])
    lm.config.model_type = "my_new_model"
    from tests.tiny_backbones import build_tokenizer

    with pytest.raises(ValueError, match="decoder_layers="):
        Flamingo.from_backbones(lm, clip_dir, tokenizer=build_tokenizer())
    model = Flamingo.from_backbones(lm, clip_dir, tokenizer=build_tokenizer(), decoder_layers="model.layers",
                                    num_latents=4, resampler_depth=1)
    assert model.num_cross_attn_blocks == 4
    with pytest.raises(ValueError, match="no submodule"):
        Flamingo.from_backbones(lm, clip_dir, tokenizer=build_tokenizer(), decoder_layers="model.blocks")


def test_siglip_and_custom_vision_modules(lm_dirs: dict[str, str], siglip_dir: str) -> None:
    model = build(lm_dirs["llama"], siglip_dir)
    inputs = model.processor("<image>Output:", images=[random_image(0)])
    assert model.encode_media(inputs["pixel_values"]).shape[1] == 4
    assert model.processor.image_processor.image_mean == pytest.approx((0.5, 0.5, 0.5))

    class PatchEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Conv2d(3, 20, kernel_size=4, stride=4)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.proj(pixels).flatten(2).transpose(1, 2)  # (N, P, 20)

    custom = Flamingo.from_backbones(lm_dirs["llama"], PatchEncoder(), image_size=16, num_latents=4,
                                     resampler_depth=1)
    assert custom.vision.feature_dim == 20 and custom.config.vision is None
    out = custom(**custom.processor("<image>hello", images=[random_image(0)]))
    assert out.logits.shape[0] == 1


def test_forward_rejects_media_count_mismatch(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    inputs = model.processor("<image>Output:<image>", images=[random_image(0), random_image(1)])
    with pytest.raises(ValueError, match="2 <image> tokens but 1 media"):
        model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"][:1])


def test_bf16_autocast_forward_and_generate(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = open_gates(build(lm_dirs["llama"], clip_dir))
    inputs = model.processor("<image>Output:", images=[random_image(0)])
    with torch.no_grad():
        full = model(**inputs).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            low = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=3)
    assert low.dtype == torch.bfloat16 and generated.shape[0] == 1
    assert (low.float() - full).abs().max() < 0.1 * full.abs().max()
