"""Save/load round trips are exact; loading is strict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForCausalLM

from flamingo_vlm import Flamingo, FlamingoConfig
from tests.conftest import random_image
from tests.model.helpers import build, open_gates


def _logits(model: Flamingo) -> torch.Tensor:
    inputs = model.processor("<image>Output: a cat.<|endofchunk|><image>Output:", images=[random_image(0), random_image(1)])
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_round_trip_gives_identical_logits(family: str, lm_dirs: dict[str, str], clip_dir: str, tmp_path: Path) -> None:
    model = open_gates(build(lm_dirs[family], clip_dir, cross_attn_every=2, resampler_type="transformer"), 0.3)
    model.save_pretrained(tmp_path / "ckpt")
    stored = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert not any(k.startswith("vision.") for k in stored)
    assert all(".cross_attn_block." in k for k in stored if k.startswith("lm."))  # frozen LM weights not copied
    loaded = Flamingo.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    assert torch.equal(_logits(loaded), _logits(model))
    assert loaded.media_token_id == model.media_token_id


def test_self_contained_checkpoint_needs_no_backbone_folders(lm_dirs: dict[str, str], clip_dir: str,
                                                             tmp_path: Path) -> None:
    lm_copy, vision_copy = tmp_path / "lm-src", tmp_path / "vision-src"
    shutil.copytree(lm_dirs["qwen2"], lm_copy)
    shutil.copytree(clip_dir, vision_copy)
    model = open_gates(build(str(lm_copy), str(vision_copy)), 0.3)
    expected = _logits(model)
    model.save_pretrained(tmp_path / "ckpt", self_contained=True)
    shutil.rmtree(lm_copy)
    shutil.rmtree(vision_copy)
    loaded = Flamingo.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(_logits(loaded), expected)
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["lm"] == "lm"


def test_model_loaded_from_a_self_contained_folder_saves_a_loadable_checkpoint(
        lm_dirs: dict[str, str], clip_dir: str, tmp_path: Path) -> None:
    # e.g. training starts from the bundled model and writes RUN/final without copying the backbones
    model = open_gates(build(lm_dirs["llama"], clip_dir), 0.3)
    model.save_pretrained(tmp_path / "bundled", self_contained=True)
    loaded = Flamingo.from_pretrained(tmp_path / "bundled")
    assert loaded.config.lm == "lm"  # the loaded config still describes the self-contained folder
    loaded.save_pretrained(tmp_path / "elsewhere")
    saved = json.loads((tmp_path / "elsewhere" / "config.json").read_text())
    assert saved["lm"] == str((tmp_path / "bundled" / "lm").resolve())
    assert saved["vision"] == str((tmp_path / "bundled" / "vision").resolve())
    assert torch.equal(_logits(Flamingo.from_pretrained(tmp_path / "elsewhere")), _logits(loaded))


def test_unfrozen_lm_weights_are_saved(lm_dirs: dict[str, str], clip_dir: str, tmp_path: Path) -> None:
    model = build(lm_dirs["gpt2"], clip_dir, freeze_lm=False)
    with torch.no_grad():
        model.lm.transformer.h[0].decoder_layer.mlp.c_fc.weight.add_(0.5)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = Flamingo.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(_logits(loaded), _logits(model))


def test_tampered_checkpoint_fails_loudly(lm_dirs: dict[str, str], clip_dir: str, tmp_path: Path) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    model.save_pretrained(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    state = load_file(str(weights))
    missing = dict(state)
    missing.pop(next(k for k in state if k.endswith("attn_gate")))
    save_file(missing, str(weights))
    with pytest.raises(ValueError, match="missing keys .*attn_gate"):
        Flamingo.from_pretrained(tmp_path / "ckpt")
    save_file({**state, "resampler.extra": torch.zeros(1)}, str(weights))
    with pytest.raises(ValueError, match="unexpected keys .*resampler.extra"):
        Flamingo.from_pretrained(tmp_path / "ckpt")
    wrong_shape = dict(state)
    wrong_shape["resampler.latents"] = torch.zeros(3, 3)
    save_file(wrong_shape, str(weights))
    with pytest.raises(ValueError, match="resampler.latents has shape"):
        Flamingo.from_pretrained(tmp_path / "ckpt")


def test_config_round_trip_and_validation(tmp_path: Path) -> None:
    config = FlamingoConfig(lm="x", cross_attn_every=4, resampler_type="mlp", extra={"note": 1})
    config.save(tmp_path / "c.json")
    assert FlamingoConfig.load(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match="FlamingoConfig.cross_attn_every=0"):
        FlamingoConfig(cross_attn_every=0)
    with pytest.raises(ValueError, match="p_next"):
        FlamingoConfig(p_next=1.5)
    with pytest.raises(ValueError, match="Unknown FlamingoConfig field.*cross_atn_every"):
        FlamingoConfig.from_dict({"cross_atn_every": 2})


def test_from_pretrained_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither a bundled model"):
        Flamingo.from_pretrained(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        Flamingo.from_pretrained(tmp_path / "empty")


def test_bf16_storage_halves_files_and_loads_back_to_float32(lm_dirs: dict[str, str], clip_dir: str,
                                                             tmp_path: Path) -> None:
    model = open_gates(build(lm_dirs["llama"], clip_dir), 0.3)
    model.save_pretrained(tmp_path / "fp32", self_contained=True)
    model.save_pretrained(tmp_path / "bf16", self_contained=True, dtype=torch.bfloat16)
    size = lambda d: sum(f.stat().st_size for f in d.rglob("*.safetensors"))  # noqa: E731
    assert size(tmp_path / "bf16") < 0.6 * size(tmp_path / "fp32")
    loaded = Flamingo.from_pretrained(tmp_path / "bf16")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert (_logits(loaded) - _logits(model)).abs().max() < 0.05 * _logits(model).abs().max()
    assert next(model.parameters()).dtype == torch.float32  # saving did not change the live model
    # The backbones alone, loaded the way a user would (transformers' default dtype "auto" reads the config), come
    # back in float32 too, not in their bf16 storage type.
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "bf16" / "lm").dtype == torch.float32
    assert AutoModel.from_pretrained(tmp_path / "bf16" / "vision").dtype == torch.float32
