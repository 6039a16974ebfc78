"""Perceiver Resampler: shapes, independence of media items, frame masking, temporal interpolation."""

from __future__ import annotations

import pytest
import torch

from flamingo_vlm.model.resampler import (
    MLPResampler,
    PerceiverResampler,
    TemporalEmbedding,
    TransformerResampler,
    _FrameInput,
)
from tests.conftest import random_image
from tests.model.helpers import build

KINDS = {
    "perceiver": lambda: PerceiverResampler(16, 2, 2, 8, num_latents=5, max_frames=8, max_frames_at_inference=64),
    "transformer": lambda: TransformerResampler(16, 2, 2, 8, num_latents=5, max_frames=8, max_frames_at_inference=64),
    "mlp": lambda: MLPResampler(16, 2, num_latents=5, max_frames=8, max_frames_at_inference=64),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_media_items_are_resampled_independently(kind: str) -> None:
    torch.manual_seed(0)
    resampler = KINDS[kind]().eval()
    features = torch.randn(3, 2, 6, 16)  # (N, F, P, D)
    out = resampler(features)
    assert out.shape == (3, 5, 16)
    alone = resampler(features[1:2])
    torch.testing.assert_close(out[1:2], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_padded_frames_are_ignored(kind: str) -> None:
    torch.manual_seed(0)
    resampler = KINDS[kind]().eval()
    real = torch.randn(1, 2, 6, 16)
    padded = torch.cat([real, torch.randn(1, 3, 6, 16) * 100], dim=1)  # 3 junk frames
    mask = torch.tensor([[True, True, False, False, False]])
    torch.testing.assert_close(resampler(padded, mask), resampler(real), atol=1e-5, rtol=1e-5)


def test_temporal_embeddings_are_interpolated_beyond_trained_frames() -> None:
    torch.manual_seed(0)
    embedding = TemporalEmbedding(max_frames=8, dim=4, max_frames_at_inference=64)
    stretched = embedding.for_frames(30)
    assert stretched.shape == (30, 4)
    torch.testing.assert_close(stretched[0], embedding.weight[0])
    torch.testing.assert_close(stretched[-1], embedding.weight[-1])
    # Frame 29 * k / 29 in trained units: frame 29 of 30 sits exactly on trained frame 7, frame 1 at 7/29.
    position = 7 / 29
    expected = embedding.weight[0] * (1 - position) + embedding.weight[1] * position
    torch.testing.assert_close(stretched[1], expected)
    assert torch.equal(embedding.for_frames(5), embedding.weight[:5])
    with pytest.raises(ValueError, match="at most 64"):
        embedding.for_frames(65)


def test_frame_input_adds_the_embedding_of_each_frame() -> None:
    torch.manual_seed(0)
    frame_input = _FrameInput(dim=4, max_frames=8, max_frames_at_inference=64)
    features = torch.randn(2, 30, 3, 4)
    tokens, mask = frame_input(features, None)
    expected = features + frame_input.temporal_embedding.for_frames(30)[None, :, None]
    torch.testing.assert_close(tokens, expected.reshape(2, 90, 4))
    assert mask is None


def test_eight_frame_model_runs_on_thirty_frames(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["llama"], clip_dir, max_frames=8)
    video = [random_image(i) for i in range(30)]
    inputs = model.processor("<image>What happens? Answer:", images=[video])
    assert inputs["pixel_values"].shape[:2] == (1, 30)
    latents = model.encode_media(inputs["pixel_values"], inputs["frame_mask"])
    assert latents.shape == (1, 4, model.vision.feature_dim) and torch.isfinite(latents).all()
    # Frame order matters: the temporal embeddings tell frames apart.
    reversed_inputs = model.processor("<image>What happens? Answer:", images=[video[::-1]])
    assert not torch.allclose(latents, model.encode_media(reversed_inputs["pixel_values"]), atol=1e-6)
    out = model.generate(**inputs, max_new_tokens=2)
    assert out.shape[0] == 1


def test_images_and_videos_mix_in_one_batch(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    video = [random_image(i) for i in range(4)]
    inputs = model.processor(["<image>a video", "<image>an image"], images=[[video], [random_image(9)]])
    assert inputs["frame_mask"].tolist() == [[True] * 4, [True, False, False, False]]
    mixed = model.encode_media(inputs["pixel_values"], inputs["frame_mask"])
    alone = model.encode_media(model.processor("<image>", images=[random_image(9)])["pixel_values"])
    torch.testing.assert_close(mixed[1:], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["perceiver", "transformer"])
def test_spatial_embeddings_make_the_resampler_see_token_order(kind: str) -> None:
    cls = PerceiverResampler if kind == "perceiver" else TransformerResampler
    torch.manual_seed(0)
    plain = cls(16, 2, 2, 8, num_latents=5, max_frames=8, max_frames_at_inference=64).eval()
    torch.manual_seed(0)
    spatial = cls(16, 2, 2, 8, num_latents=5, max_frames=8, max_frames_at_inference=64, spatial_positions=6).eval()
    with torch.no_grad():
        spatial.frame_input.spatial_embedding.weight.normal_()  # trained embeddings are far from their 0.02 init
    features = torch.randn(2, 1, 6, 16)
    swapped = features[:, :, [5, 1, 2, 3, 4, 0]]  # the object in the first cell moves to the last
    # Attention pooling alone is blind to where a token sits (the paper's resampler: a permutation changes nothing);
    # spatial embeddings make the same features at other places give other latents.
    torch.testing.assert_close(plain(features), plain(swapped), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(spatial(features), spatial(swapped), atol=1e-3)
    with pytest.raises(ValueError, match="spatial_positions"):
        spatial(torch.randn(1, 1, 7, 16))


def test_spatial_embeddings_are_saved_and_reloaded(lm_dirs: dict[str, str], clip_dir: str, tmp_path) -> None:
    from flamingo_vlm.model.flamingo import Flamingo

    probe = build(lm_dirs["llama"], clip_dir)
    image = probe.processor("<image>", images=[random_image(3)])["pixel_values"]
    patches = probe.vision(image.flatten(0, 1)).shape[1]
    model = build(lm_dirs["llama"], clip_dir, spatial_positions=patches)
    with torch.no_grad():
        model.resampler.frame_input.spatial_embedding.weight.normal_()
    model.save_pretrained(tmp_path / "m")
    again = Flamingo.from_pretrained(tmp_path / "m").eval()
    assert again.config.spatial_positions == patches
    torch.testing.assert_close(again.encode_media(image), model.encode_media(image))
    with torch.no_grad():  # the reloaded embeddings are in use: without them the latents change
        again.resampler.frame_input.spatial_embedding.weight.zero_()
    assert not torch.allclose(again.encode_media(image), model.encode_media(image), atol=1e-4)


def test_spatial_embeddings_are_refused_where_they_cannot_apply() -> None:
    from flamingo_vlm.config import FlamingoConfig

    with pytest.raises(ValueError, match="spatial_positions"):
        FlamingoConfig(lm="x", spatial_positions=-1)
    with pytest.raises(ValueError, match="perceiver or transformer"):
        FlamingoConfig(lm="x", spatial_positions=64, resampler_type="mlp")
