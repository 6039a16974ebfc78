"""Shared fixtures: tiny backbones saved to temp folders once per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_backbones import FAMILIES, save_lm, save_vision


@pytest.fixture(scope="session")
def lm_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {family: str(save_lm(family, tmp_path_factory.mktemp(f"lm-{family}"))) for family in FAMILIES}


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_vision("clip", tmp_path_factory.mktemp("clip")))


@pytest.fixture(scope="session")
def siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_vision("siglip", tmp_path_factory.mktemp("siglip")))


def random_image(seed: int, size: int = 40) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
