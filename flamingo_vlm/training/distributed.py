"""Process-group setup and model wrapping for DDP or FSDP2, under torchrun (gloo on CPU, NCCL on GPUs)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from flamingo_vlm.model.flamingo import Flamingo
from flamingo_vlm.model.fusion import FlamingoDecoderLayer


@dataclass
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_choice: str) -> DistributedContext:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    if device_choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was requested but CUDA is not available.")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def wrap_model(model: Flamingo, strategy: str, context: DistributedContext) -> nn.Module:
    """DDP, or FSDP2: ``fully_shard`` each decoder/fusion layer and the resampler, then the root."""
    if not context.enabled:
        return model
    if strategy in ("auto", "ddp"):
        from torch.nn.parallel import DistributedDataParallel

        # Text-only batches leave the cross-attention weights unused, so DDP must tolerate unused parameters.
        return DistributedDataParallel(model, device_ids=[context.device] if context.device.type == "cuda" else None,
                                       find_unused_parameters=True)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for module in model.lm.modules():
            if isinstance(module, FlamingoDecoderLayer):
                fully_shard(module)
        fully_shard(model.resampler)
        fully_shard(model)
        return model
    raise ValueError(f"distributed={strategy!r}: choose auto, ddp or fsdp.")


def all_reduce_sum(value: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    if context.enabled:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def main_rank_choice(choice: str, options: Sequence[str], context: DistributedContext) -> str:
    """Rank 0's ``choice`` (one of ``options``) on every rank: a choice each process makes by measuring (such as
    ``precision: auto``) could come out differently on different ranks, which must compute alike."""
    if not context.enabled:
        return choice
    index = torch.tensor([list(options).index(choice)], device=context.device)
    dist.broadcast(index, src=0)
    return options[int(index.item())]


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def shutdown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
