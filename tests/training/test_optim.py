"""AdamW groups and the learning-rate schedule follow the paper."""

from __future__ import annotations

import pytest

from flamingo_vlm.training.config import OptimConfig
from flamingo_vlm.training.optim import build_optimizer, fused_adamw_supported, lr_factor, set_learning_rate
from tests.model.helpers import build


def test_weight_decay_groups(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    optimizer = build_optimizer(model, OptimConfig(weight_decay=0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {g["name"]: {names[id(p)] for p in g["params"]} for g in optimizer.param_groups}
    decayed, plain = groups["decay"], groups["no_decay"]
    assert all(".cross_attn_block." in n and n.endswith("weight") for n in decayed)
    assert all(n.endswith("attn_gate") for n in groups["attn_gates"]) and len(groups["attn_gates"]) == 4
    assert all(n.endswith("ffw_gate") for n in groups["ffw_gates"]) and len(groups["ffw_gates"]) == 4
    assert any("to_q" in n for n in decayed) and any("ffw.up" in n for n in decayed)
    assert all(n.startswith("resampler.") or n.startswith("new_tokens.") or "gate" in n or "norm" in n
               for n in plain)
    assert any(n.startswith("resampler.") and n.endswith("to_q.weight") for n in plain)  # paper: no decay there
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.1, 0.0}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decayed | plain | groups["attn_gates"] | groups["ffw_gates"] == trainable and not decayed & plain
    assert optimizer.defaults["fused"]  # CPU float32 parameters: PyTorch's fused kernel


def test_gate_learning_rate_multipliers(lm_dirs: dict[str, str], clip_dir: str) -> None:
    model = build(lm_dirs["llama"], clip_dir)
    lrs = {}
    for ffw in (None, 2.0):
        config = OptimConfig(lr=1e-3, warmup_steps=0, gate_lr_multiplier=10.0, ffw_gate_lr_multiplier=ffw)
        optimizer = build_optimizer(model, config)
        set_learning_rate(optimizer, 0, 10, config)
        lrs[ffw] = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs[None] == pytest.approx({"decay": 1e-3, "no_decay": 1e-3, "attn_gates": 1e-2, "ffw_gates": 1e-2})
    assert lrs[2.0] == pytest.approx({"decay": 1e-3, "no_decay": 1e-3, "attn_gates": 1e-2, "ffw_gates": 2e-3})


def test_fused_adamw_only_where_pytorch_has_the_kernel() -> None:
    import torch

    assert fused_adamw_supported([torch.zeros(2), torch.zeros(2, dtype=torch.bfloat16)])
    assert not fused_adamw_supported([torch.zeros(2, device="meta")])
    assert not fused_adamw_supported([torch.zeros(2, dtype=torch.long)])
    assert not fused_adamw_supported([])


def test_warmup_then_constant_or_decay() -> None:
    paper = OptimConfig(lr=1e-4, warmup_steps=5000)
    assert lr_factor(0, 500_000, paper) == pytest.approx(1 / 5000)
    assert lr_factor(2499, 500_000, paper) == pytest.approx(0.5)
    assert lr_factor(4999, 500_000, paper) == 1.0 and lr_factor(400_000, 500_000, paper) == 1.0
    cosine = OptimConfig(warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(10, 110, cosine) == pytest.approx(1.0)
    assert lr_factor(60, 110, cosine) == pytest.approx(0.55)
    assert lr_factor(110, 110, cosine) == pytest.approx(0.1)
    linear = OptimConfig(warmup_steps=0, schedule="linear")
    assert lr_factor(50, 100, linear) == pytest.approx(0.5)
