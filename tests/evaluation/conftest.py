"""A tiny random Flamingo saved to a folder once per session, evaluated by folder as a user would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from flamingo_vlm import Flamingo
from tests.model.helpers import build, open_gates
from tests.tiny_backbones import save_lm, save_vision


@pytest.fixture(scope="package", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny matrices on a shared machine: threads only add contention (single-thread runs ~10x faster here)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval-model")
    lm = save_lm("llama", root / "lm")
    vision = save_vision("clip", root / "clip")
    # Open gates so images change the outputs (fresh gates are 0 and would hide media bugs).
    model = open_gates(build(str(lm), str(vision)), 0.5)
    model.save_pretrained(root / "model")
    return root / "model"


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> Flamingo:
    return Flamingo.from_pretrained(tiny_model_dir).eval()
