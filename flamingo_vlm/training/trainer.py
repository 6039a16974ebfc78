"""The training loop: one process on a CPU, or many under torchrun with DDP or FSDP2.

One optimiser step (paper App. A.3, B.1.2):
    for each dataset m (all of them, or one in round-robin mode):
        batch_m -> logits -> sum of token NLLs / tokens of dataset m in the global batch
        backward(lambda_m * that)        gradients accumulate across datasets
    clip the global gradient norm once; AdamW step; lr from the schedule
Normalising by the *global* token count (all-reduced) makes a run on N processes compute exactly the gradient
of the same run on one process with the N-times larger batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from flamingo_vlm.config import FlamingoConfig
from flamingo_vlm.data.stream import ReaderState, ShardStream, make_loader
from flamingo_vlm.model.flamingo import Flamingo
from flamingo_vlm.model.fusion import FlamingoDecoderLayer
from flamingo_vlm.training.checkpoint import gather_trainable_weights, list_checkpoints, load_checkpoint, save_checkpoint
from flamingo_vlm.training.config import TrainConfig, config_to_dict
from flamingo_vlm.training.contention import CpuContention
from flamingo_vlm.training.cpu_precision import PRECISIONS, bf16_slower_note, resolve_precision
from flamingo_vlm.training.distributed import (
    DistributedContext,
    all_reduce_sum,
    barrier,
    init_distributed,
    main_rank_choice,
    shutdown,
    wrap_model,
)
from flamingo_vlm.training.optim import build_optimizer, set_learning_rate

log = logging.getLogger(__name__)


def build_model(config: TrainConfig) -> Flamingo:
    spec = config.model
    if spec.from_pretrained is not None:
        return Flamingo.from_pretrained(spec.from_pretrained)
    return Flamingo.from_backbones(spec.lm, spec.vision, config=FlamingoConfig(**spec.config))


def store_frozen_weights(model: Flamingo, dtype: torch.dtype) -> None:
    """Keep the frozen vision encoder and frozen LM weights in ``dtype`` (e.g. bf16 under bf16 autocast).

    Autocast would otherwise cast every frozen fp32 weight to bf16 on every forward pass; stored in bf16 they are
    read as they are, and take half the memory. Trainable weights (and the optimiser state) stay fp32.
    """
    model.vision.to(dtype)
    if model.config.freeze_lm:
        for param in model.lm.parameters():
            if not param.requires_grad:
                param.data = param.data.to(dtype)


def prepare_model(model: Flamingo, config: TrainConfig, device: torch.device) -> Flamingo:
    """Frozen-weight dtype, device and activation checkpointing (before any distributed wrapping)."""
    if config.frozen_dtype == "bf16":
        store_frozen_weights(model, torch.bfloat16)
    model.to(device)
    if config.activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
            CheckpointImpl,
            apply_activation_checkpointing,
            checkpoint_wrapper,
        )

        apply_activation_checkpointing(
            model.lm, checkpoint_wrapper_fn=partial(checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT),
            check_fn=lambda module: isinstance(module, FlamingoDecoderLayer),
        )
    return model.train()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def token_nll_sum(model: nn.Module, tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of next-token NLLs over the labelled tokens, and their count."""
    labels = tensors["labels"]
    inputs = {k: v for k, v in tensors.items() if k != "labels"}
    logits = model(**inputs).logits  # (B, T, V)
    targets = labels[:, 1:]
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100,
                          reduction="sum")
    return nll, (targets != -100).sum()


def gate_table(model: Flamingo) -> list[dict[str, float]]:
    """|tanh(gate)| per block, bottom to top (works on FSDP-sharded gates: a collective there)."""
    table = []
    for block in model.cross_attn_blocks():
        row = {}
        for name in ("attn_gate", "ffw_gate"):
            param = getattr(block, name, None)
            if param is None:
                continue
            value = param.full_tensor() if hasattr(param, "full_tensor") else param
            row[name.removesuffix("_gate")] = abs(float(torch.tanh(value.detach().float()).reshape(-1)[0]))
        table.append(row)
    return table


class MetricsWriter:
    """metrics.jsonl (always) and TensorBoard (when installed), rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tensorboard = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                self.tensorboard = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as stream:
            stream.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            step = record["step"]
            for name, value in record["loss"].items():
                self.tensorboard.add_scalar(f"loss/{name}", value, step)
            self.tensorboard.add_scalar("lr", record["lr"], step)
            self.tensorboard.add_scalar("tokens_per_s", record["tokens_per_s"], step)
            if record.get("other_cpu_cores") is not None:
                self.tensorboard.add_scalar("other_cpu_cores", record["other_cpu_cores"], step)
            for index, gates in enumerate(record["gates"]):
                for name, value in gates.items():
                    self.tensorboard.add_scalar(f"gate_{name}/block_{index}", value, step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def train(config: TrainConfig) -> Path:
    """Run (or resume) training; returns the folder of the final export (loadable by Flamingo.from_pretrained)."""
    context = init_distributed(config.device)
    try:
        return _train(config, context)
    finally:
        shutdown(context)


def _train(config: TrainConfig, context: DistributedContext) -> Path:
    run_dir = Path(config.output_dir)
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config_to_dict(config), indent=1))
    seed_everything(config.seed)  # identical initialisation on every rank
    model = prepare_model(build_model(config), config, context.device)
    wrapped = wrap_model(model, config.distributed, context)
    optimizer = build_optimizer(model, config.optim)
    trainable = [p for p in model.parameters() if p.requires_grad]

    start_step, data_state = 0, {}
    checkpoints = list_checkpoints(run_dir)
    if config.resume == "must" and not checkpoints:
        raise ValueError(f"resume: must, but {run_dir} has no checkpoint.")
    if config.resume != "never" and checkpoints:
        start_step, data_state = load_checkpoint(checkpoints[-1], model, optimizer, context)
        if context.is_main:
            log.info("resumed from %s at step %d", checkpoints[-1], start_step)
    else:
        seed_everything(config.seed + 1000 * context.rank)  # augmentation draws differ across ranks

    streams, iterators, positions, batches_seen = {}, {}, {}, {}
    for dataset in config.datasets:
        saved = data_state.get(dataset.name, {})
        workers = max(1, dataset.num_workers)
        positions[dataset.name] = {int(w): ReaderState(**s) for w, s in saved.get("workers", {}).items()}
        batches_seen[dataset.name] = int(saved.get("batches", 0))
        streams[dataset.name] = ShardStream(dataset, model.processor, seed=config.seed, rank=context.rank,
                                            world_size=context.world_size, num_workers=dataset.num_workers,
                                            start=positions[dataset.name],
                                            worker_offset=batches_seen[dataset.name] % workers)
        iterators[dataset.name] = iter(make_loader(streams[dataset.name]))
    skipped: dict[str, Counter] = {d.name: Counter(saved_counts) for d in config.datasets
                                   for saved_counts in [data_state.get(d.name, {}).get("skipped", {})]}

    metrics = MetricsWriter(run_dir, context.is_main)
    bar = tqdm(total=config.steps, initial=start_step, disable=not (context.is_main and config.progress),
               desc="train", dynamic_ncols=True)
    # auto is measured in each process; every rank takes rank 0's answer so that all compute alike.
    precision = main_rank_choice(resolve_precision(config.precision, context.device.type), PRECISIONS, context)
    autocast = torch.autocast(context.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    if config.precision == "auto" and context.is_main:
        log.info("precision: auto -> %s on this %s", precision, context.device.type)
    elif context.device.type == "cpu" and config.precision == "bf16" and context.is_main:
        slow = bf16_slower_note()
        if slow:
            log.warning(slow)
    is_ddp = isinstance(wrapped, nn.parallel.DistributedDataParallel)
    # On a CPU, other busy programs slow every op far beyond their share of the cores: say so when it happens.
    contention = CpuContention(torch.get_num_threads()) if context.device.type == "cpu" and context.is_main else None
    window_tokens, window_start = 0, time.perf_counter()
    last_losses: dict[str, float] = {}
    for step in range(start_step, config.steps):
        lr = set_learning_rate(optimizer, step, config.steps, config.optim)
        active = config.datasets if config.accumulation == "all" else [config.datasets[step % len(config.datasets)]]
        optimizer.zero_grad(set_to_none=True)
        for index, dataset in enumerate(active):
            batch = next(iterators[dataset.name])
            positions[dataset.name][batch.worker] = batch.state
            batches_seen[dataset.name] += 1
            skipped[dataset.name].update(batch.skipped)
            tensors = {k: v.to(context.device, non_blocking=True) for k, v in batch.tensors.items()}
            sync = is_ddp and index < len(active) - 1
            with wrapped.no_sync() if sync else contextlib.nullcontext():
                with autocast:
                    nll, count = token_nll_sum(wrapped, tensors)
                global_count = all_reduce_sum(count.detach().clone().float(), context).clamp_min(1.0)
                loss = dataset.resolved_loss_weight() * nll * context.world_size / global_count
                loss.backward()
            last_losses[dataset.name] = float(all_reduce_sum(nll.detach().float().clone(), context) / global_count)
            window_tokens += batch.num_tokens * context.world_size
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.optim.grad_clip if config.optim.grad_clip > 0
                                                   else float("inf"))
        optimizer.step()
        done = step + 1
        bar.update(1)
        if done % config.log_every == 0 or done == config.steps:
            elapsed = time.perf_counter() - window_start
            tokens_per_s = window_tokens / max(elapsed, 1e-9)
            record = {"step": done, "lr": lr, "loss": dict(last_losses), "grad_norm": float(grad_norm),
                      "tokens_per_s": tokens_per_s, "gates": gate_table(model),
                      "skipped": {k: dict(v) for k, v in skipped.items() if v}}
            if contention is not None:
                contention.check()
                record["other_cpu_cores"] = contention.last_other_cores
            metrics.write(record)
            bar.set_postfix({**{k: f"{v:.3f}" for k, v in last_losses.items()}, "lr": f"{lr:.2e}",
                             "tok/s": f"{tokens_per_s:.0f}"})
            window_tokens, window_start = 0, time.perf_counter()
        if done % config.checkpoint_every == 0 or done == config.steps:
            data = {name: {"workers": {str(w): vars(s) for w, s in positions[name].items()},
                           "batches": batches_seen[name], "skipped": dict(skipped[name])} for name in positions}
            save_checkpoint(run_dir, done, model, optimizer, context, data, config_to_dict(config), config.keep_last)
    bar.close()
    metrics.close()

    weights = gather_trainable_weights(model)
    export = run_dir / "final"
    if context.is_main:
        model.save_pretrained(export, weights=weights)
        total_skipped = {k: dict(v) for k, v in skipped.items() if v}
        if total_skipped:
            log.warning("skipped samples per dataset and reason: %s", total_skipped)
    barrier(context)
    return export
