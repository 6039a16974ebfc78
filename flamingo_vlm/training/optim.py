"""AdamW parameter groups and the learning-rate schedule (paper App. B.1.2)."""

from __future__ import annotations

import math

import torch
from torch import nn

from flamingo_vlm.training.config import OptimConfig


def uses_weight_decay(name: str, param: torch.Tensor, module_of: dict[str, nn.Module]) -> bool:
    """Decay only weight matrices of the new layers (and of an unfrozen LM); never the Perceiver Resampler
    (paper), gates, norms, biases, embeddings or the new token rows."""
    if name.startswith(("resampler.", "new_tokens.")) or param.ndim < 2:
        return False
    owner = module_of.get(name.rsplit(".", 1)[0])
    return not isinstance(owner, (nn.Embedding, nn.LayerNorm))


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: with and without weight decay, and the two kinds of tanh gate (each
    with its own learning-rate multiplier, no decay)."""
    modules = dict(model.named_modules())
    decay, no_decay, attn_gates, ffw_gates = [], [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith("attn_gate"):
            attn_gates.append(param)
        elif name.endswith("ffw_gate"):
            ffw_gates.append(param)
        else:
            (decay if uses_weight_decay(name, param, modules) else no_decay).append(param)
    params = decay + no_decay + attn_gates + ffw_gates
    if not params:
        raise ValueError("The model has no trainable parameters.")
    ffw_multiplier = config.ffw_gate_lr_multiplier
    if ffw_multiplier is None:
        ffw_multiplier = config.gate_lr_multiplier
    groups = [{"params": decay, "weight_decay": config.weight_decay, "name": "decay", "lr_multiplier": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "name": "no_decay", "lr_multiplier": 1.0},
              {"params": attn_gates, "weight_decay": 0.0, "name": "attn_gates",
               "lr_multiplier": config.gate_lr_multiplier},
              {"params": ffw_gates, "weight_decay": 0.0, "name": "ffw_gates", "lr_multiplier": ffw_multiplier}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas, eps=config.eps,
                             fused=fused_adamw_supported(params))


def fused_adamw_supported(params: list[torch.Tensor]) -> bool:
    """Whether PyTorch's fused AdamW kernel can update ``params``: floating-point tensors on CPU or CUDA (FSDP2's
    sharded parameters included). It updates every tensor in one pass instead of about ten small ops per tensor:
    4x faster than the default for the tiny-world model's new layers on CPU (0.24 vs 1.03 ms per step)."""
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def lr_factor(step: int, total_steps: int, config: OptimConfig) -> float:
    """Multiplier of ``config.lr`` used for optimiser step ``step`` (0-based)."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / decay_steps)
    if config.schedule == "cosine":
        shape = 0.5 * (1 + math.cos(math.pi * progress))
    else:
        shape = 1.0 - progress
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * shape


def set_learning_rate(optimizer: torch.optim.Optimizer, step: int, total_steps: int, config: OptimConfig) -> float:
    lr = config.lr * lr_factor(step, total_steps, config)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_multiplier", 1.0)
    return lr
