"""Resumable training checkpoints: safetensors for tensors, JSON for everything else, never pickle.

Layout of ``RUN/checkpoints/step-00001000/``:
    weights.safetensors     trainable weights (full, gathered from every rank)
    optimizer.safetensors   AdamW moments and step counts (full, gathered), keyed ``{param}/{name}``
    optimizer.json          hyper-parameters of the parameter groups
    trainer.json            step and the run's config
    rank-{r}.json           data position and Python/NumPy RNG states of rank r
    rank-{r}.safetensors    torch (and CUDA) RNG states of rank r
Everything is written into ``step-XXXXXXXX.tmp`` and renamed once complete, so a crash mid-write never leaves a
checkpoint that looks finished. Only the newest ``keep_last`` are kept.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.distributed.tensor import DTensor, distribute_tensor

from flamingo_vlm.model.flamingo import Flamingo
from flamingo_vlm.training.distributed import DistributedContext, barrier

PREFIX = "step-"


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and not p.name.endswith(".tmp")
            and (p / "trainer.json").is_file()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))


def _full(value: torch.Tensor) -> torch.Tensor:
    """The whole tensor, gathering FSDP2 shards (a collective: every rank must call it in the same order)."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def _like(value: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """A full tensor laid out like ``current`` (sharded the same way when ``current`` is an FSDP2 DTensor)."""
    if isinstance(current, DTensor):
        return distribute_tensor(value.to(current.device, current.dtype), current.device_mesh, current.placements)
    return value.to(current.device, current.dtype)


def gather_trainable_weights(model: Flamingo) -> dict[str, torch.Tensor]:
    """Full checkpointed weights on CPU (keys as in ``Flamingo.save_pretrained``); collective under FSDP2."""
    state = model.state_dict()
    return {key: _full(state[key]).detach().cpu().contiguous() for key in model.flamingo_state_dict_keys()}


def load_trainable_weights(model: Flamingo, weights: dict[str, torch.Tensor], source: Path) -> None:
    expected = set(model.flamingo_state_dict_keys())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        raise ValueError(f"Checkpoint {source} does not match the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}. Was the run's model config changed?")
    current = model.state_dict()
    model.load_state_dict({k: _like(v, current[k]) for k, v in weights.items()}, strict=False)


def optimizer_tensors(model: Flamingo, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """AdamW state as ``{param_name}/{state_name}`` -> full CPU tensor; collective under FSDP2."""
    tensors = {}
    for name, param in model.named_parameters():
        for key, value in optimizer.state.get(param, {}).items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{name}/{key}"] = _full(tensor).detach().cpu().contiguous()
    return tensors


def load_optimizer_tensors(model: Flamingo, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           source: Path) -> None:
    params = dict(model.named_parameters())
    for flat_key, value in tensors.items():
        name, key = flat_key.rsplit("/", 1)
        if name not in params:
            raise ValueError(f"Checkpoint {source}: optimizer state for unknown parameter {name}.")
        param = params[name]
        # Scalars (the step count) stay plain tensors; moments take the parameter's layout.
        optimizer.state[param][key] = value if value.dim() == 0 else _like(value, param.detach())


def save_checkpoint(run_dir: Path, step: int, model: Flamingo, optimizer: torch.optim.Optimizer,
                    context: DistributedContext, data_state: dict[str, Any], config: dict[str, Any],
                    keep_last: int) -> Path | None:
    """Collective: every rank calls it. Returns the checkpoint folder on rank 0."""
    final = checkpoint_dir(run_dir) / f"{PREFIX}{step:08d}"
    tmp = final.with_name(final.name + ".tmp")
    weights = gather_trainable_weights(model)
    moments = optimizer_tensors(model, optimizer)
    if context.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    barrier(context)
    if context.is_main:
        save_file(weights, str(tmp / "weights.safetensors"))
        save_file(moments, str(tmp / "optimizer.safetensors"))
        groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        _write_json(tmp / "optimizer.json", {"param_groups": groups})
    _save_rank_state(tmp, context, data_state)
    barrier(context)
    if context.is_main:
        _write_json(tmp / "trainer.json", {"step": step, "config": config})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(context)
    return final if context.is_main else None


def load_checkpoint(path: Path, model: Flamingo, optimizer: torch.optim.Optimizer,
                    context: DistributedContext) -> tuple[int, dict[str, Any]]:
    """Restore weights, optimiser, this rank's RNG states; return (step, this rank's data state)."""
    load_trainable_weights(model, load_file(str(path / "weights.safetensors")), path)
    groups = json.loads((path / "optimizer.json").read_text())["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise ValueError(f"Checkpoint {path} has {len(groups)} optimizer groups, the run has "
                         f"{len(optimizer.param_groups)}.")
    for group, saved in zip(optimizer.param_groups, groups):
        group.update({k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    load_optimizer_tensors(model, optimizer, load_file(str(path / "optimizer.safetensors")), path)
    trainer = json.loads((path / "trainer.json").read_text())
    rank_file = path / f"rank-{context.rank}.json"
    if not rank_file.is_file():
        raise ValueError(f"Checkpoint {path} has no state for rank {context.rank}; resume with the same number "
                         f"of processes it was written with.")
    rank_state = json.loads(rank_file.read_text())
    _restore_rng(path, context, rank_state)
    return int(trainer["step"]), rank_state["data"]


def _save_rank_state(directory: Path, context: DistributedContext, data_state: dict[str, Any]) -> None:
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    info = {
        "data": data_state,
        "python_rng": [python_state[0], list(python_state[1]), python_state[2]],
        "numpy_rng": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
    }
    _write_json(directory / f"rank-{context.rank}.json", info)
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and context.device.type == "cuda":
        tensors["cuda"] = torch.cuda.get_rng_state(context.device)
    save_file(tensors, str(directory / f"rank-{context.rank}.safetensors"))


def _restore_rng(directory: Path, context: DistributedContext, info: dict[str, Any]) -> None:
    version, internal, gauss = info["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = info["numpy_rng"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    tensors = load_file(str(directory / f"rank-{context.rank}.safetensors"))
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and context.device.type == "cuda":
        torch.cuda.set_rng_state(tensors["cuda"], context.device)


def _write_json(path: Path, values: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(values, indent=1))
    os.replace(tmp, path)
