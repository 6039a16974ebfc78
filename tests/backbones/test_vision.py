"""Vision towers: ViTs give patch tokens, CNNs give their final feature map's cells as tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flamingo_vlm import Flamingo
from flamingo_vlm.backbones.vision import VisionEncoder, load_vision_tower
from flamingo_vlm.processing.images import ImageProcessor
from tests.conftest import random_image
from tests.model.helpers import build
from tests.tiny_backbones import save_vision


@pytest.mark.parametrize("kind, tokens, dim", [("resnet", 16, 20), ("convnext", 64, 16)])
def test_cnn_feature_map_cells_become_tokens(kind: str, tokens: int, dim: int, tmp_path: Path) -> None:
    folder = save_vision(kind, tmp_path / kind)
    tower = load_vision_tower(folder)
    encoder = VisionEncoder(tower, image_size=32).eval()
    assert encoder.feature_dim == dim
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features = encoder(pixels)
        feature_map = tower(pixel_values=pixels).last_hidden_state  # (3, dim, h, w)
    assert features.shape == (3, tokens, dim)
    # Row-major cells: token r * w + c is the map's cell (r, c).
    width = feature_map.shape[-1]
    torch.testing.assert_close(features[1, 1 * width + 2], feature_map[1, :, 1, 2])
    # Every cell, although the encoder runs the tower on channels-last pixels (faster CPU kernels).
    torch.testing.assert_close(features, feature_map.flatten(2).transpose(1, 2))
    # An earlier hidden layer is a feature map too, with its own width.
    early = VisionEncoder(tower, feature_layer=1, image_size=32)
    assert early.feature_dim == tower.config.hidden_sizes[0] and early(pixels).dim() == 3


def test_flamingo_on_a_resnet_round_trips(lm_dirs: dict[str, str], tmp_path: Path) -> None:
    folder = save_vision("resnet", tmp_path / "resnet")
    model = build(lm_dirs["llama"], str(folder))
    processor = model.processor.image_processor
    assert processor.image_size == 32 and processor.image_std == pytest.approx((0.25, 0.25, 0.25))
    inputs = model.processor("<image>a red circle<|endofchunk|><image>a", images=[random_image(0), random_image(1)])
    with torch.no_grad():
        logits = model(**inputs).logits
    model.save_pretrained(tmp_path / "saved", self_contained=True)
    again = Flamingo.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).logits, logits)


def test_cnn_folder_without_preprocessing_file_says_what_to_add(tmp_path: Path) -> None:
    folder = save_vision("resnet", tmp_path / "resnet")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(ValueError, match="image_mean|image size|statistics"):
        ImageProcessor.from_vision_folder(folder)


def test_resnet_classifier_checkpoint_loads_its_backbone(tmp_path: Path) -> None:
    from transformers import ResNetConfig, ResNetForImageClassification

    classifier = ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[12, 20], depths=[1, 1],
                                                           layer_type="basic", num_labels=3))
    classifier.save_pretrained(tmp_path)
    tower = load_vision_tower(tmp_path)  # the head is left behind, the backbone's weights come over
    assert type(tower).__name__ == "ResNetModel"
    for name, weight in tower.state_dict().items():
        torch.testing.assert_close(weight, classifier.resnet.state_dict()[name])
