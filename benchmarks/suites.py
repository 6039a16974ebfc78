"""Benchmark suites: one configuration, applied identically to every implementation.

Every size that both sides can express is set here once and read by every worker, so the models compared are built
at exactly the same LM width/depth/heads, vision width/depth/patch, resampler depth/latents/heads, cross-attention
heads/frequency, sequence length, images per sequence and batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Suite:
    name: str
    description: str
    # --- language model (LlamaForCausalLM, random weights saved once and loaded by both sides) ---
    lm_width: int
    lm_layers: int
    lm_heads: int
    lm_intermediate: int
    vocab_size: int
    """Target size of the byte-level BPE tokenizer; the LM's vocabulary is exactly the tokenizer's length."""
    max_positions: int
    # --- vision tower (HF CLIPVisionModel for us, the same ViT as an open_clip config for OpenFlamingo) ---
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_head_width: int
    # --- Perceiver Resampler and gated cross-attention ---
    resampler_depth: int
    num_latents: int
    resampler_heads: int
    resampler_head_dim: int
    cross_attn_every: int
    cross_attn_heads: int
    cross_attn_head_dim: int
    ffw_mult: int
    # --- training step ---
    seq_len: int
    images_per_seq: int
    batch: int
    train_precisions: list[str]
    train_warmup: int
    train_reps: int
    # --- generation (batch 1: one query; shots are <image>Output: caption<|endofchunk|> demos) ---
    shots: list[int]
    beams: list[int]
    new_tokens: int
    caption_tokens: int
    gen_warmup: int
    gen_reps: int
    # --- module-level comparisons (flamingo-pytorch's modules need media width == text width) ---
    module_seq_len: int
    sweep_images: list[int]
    module_warmup: int
    module_reps: int
    # --- how to run ---
    peers: list[str] = field(default_factory=lambda: ["openflamingo", "flamingo_pytorch"])
    fresh_process: bool = True
    """One fresh worker process per (implementation, measurement), so peak memory is that measurement's alone."""
    memory_processes: bool = True
    """Measure peak memory in separate worker processes (one warm-up call + one call, malloc tuned so resident memory
    follows live memory); otherwise the timing process's high-water mark is used."""
    matmul_size: int = 2048
    """Side of the square matmul whose FLOP/s is the MFU denominator (measured at the start and end of a run)."""
    rounds: int = 1
    """How many times the whole alternating ours/peer sequence is repeated (repetitions are pooled)."""
    bf16_gen_shots: list[int] = field(default_factory=list)
    """Shot counts whose queries (every beam size) are also timed with both sides' weights and images in bf16, the
    dtype a user on a GPU or a CPU with fast bf16 would prompt in (skipped where the CPU emulates bf16)."""
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Suite:
        return cls(**values)

    def matched_config(self) -> dict[str, Any]:
        """The sizes both sides are built with (printed in the report)."""
        keys = ("lm_width", "lm_layers", "lm_heads", "lm_intermediate", "vocab_size", "image_size", "patch_size",
                "vision_width", "vision_layers", "resampler_depth", "num_latents", "resampler_heads",
                "resampler_head_dim", "cross_attn_every", "cross_attn_heads", "cross_attn_head_dim", "ffw_mult",
                "seq_len", "images_per_seq", "batch")
        return {k: getattr(self, k) for k in keys}


SUITES: dict[str, Suite] = {
    "cpu-small": Suite(
        name="cpu-small",
        description="The tiny-world sizes (LM 256 wide x 4 layers, ViT 128 x 4 at 64 px): minutes on 2 CPU cores.",
        lm_width=256, lm_layers=4, lm_heads=4, lm_intermediate=1024, vocab_size=2048, max_positions=2048,
        image_size=64, patch_size=8, vision_width=128, vision_layers=4, vision_head_width=64,
        resampler_depth=2, num_latents=16, resampler_heads=4, resampler_head_dim=32,
        cross_attn_every=1, cross_attn_heads=4, cross_attn_head_dim=64, ffw_mult=4,
        seq_len=256, images_per_seq=5, batch=4, train_precisions=["fp32", "bf16", "bf16-frozen"], train_warmup=2, train_reps=6,
        shots=[0, 4, 8, 16, 32], beams=[1, 3], new_tokens=20, caption_tokens=12, gen_warmup=1, gen_reps=4,
        module_seq_len=512, sweep_images=[1, 4, 8, 16, 32], module_warmup=2, module_reps=7, rounds=2,
        bf16_gen_shots=[32],
    ),
    "smoke": Suite(
        name="smoke",
        description="Seconds, our side only: checks that the benchmark code runs (used by the test suite).",
        lm_width=32, lm_layers=2, lm_heads=2, lm_intermediate=64, vocab_size=300, max_positions=512,
        image_size=32, patch_size=8, vision_width=32, vision_layers=1, vision_head_width=16,
        resampler_depth=1, num_latents=4, resampler_heads=2, resampler_head_dim=16,
        cross_attn_every=1, cross_attn_heads=2, cross_attn_head_dim=16, ffw_mult=2,
        seq_len=32, images_per_seq=2, batch=2, train_precisions=["fp32", "bf16", "bf16-frozen"], train_warmup=1, train_reps=2,
        shots=[0, 2], beams=[1, 2], new_tokens=3, caption_tokens=3, gen_warmup=1, gen_reps=2,
        module_seq_len=32, sweep_images=[1, 2], module_warmup=1, module_reps=2,
        peers=[], fresh_process=False, memory_processes=False, matmul_size=256, bf16_gen_shots=[2],
    ),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise SystemExit(f"Unknown suite {name!r}; choose one of {sorted(SUITES)}.")
    return SUITES[name]


def tasks_for(suite: Suite) -> list[dict[str, Any]]:
    """Every measurement of the suite, in the order they run. Each is one worker process per implementation."""
    tasks: list[dict[str, Any]] = []
    for precision in suite.train_precisions:
        tasks.append({"kind": "train", "precision": precision})
    for shots in suite.shots:
        for beams in suite.beams:
            tasks.append({"kind": "generate", "shots": shots, "num_beams": beams})
    for shots in suite.bf16_gen_shots:
        for beams in suite.beams:
            tasks.append({"kind": "generate", "shots": shots, "num_beams": beams, "dtype": "bf16"})
    tasks.append({"kind": "resampler"})
    tasks.append({"kind": "xattn_block"})
    tasks.append({"kind": "xattn_sweep"})
    return tasks


# Which implementation runs which kind of measurement.
SUPPORTED = {
    "ours": {"peak", "train", "generate", "resampler", "xattn_block", "xattn_sweep"},
    "openflamingo": {"peak", "train", "generate", "resampler", "xattn_block", "xattn_sweep"},
    "flamingo_pytorch": {"peak", "resampler", "xattn_block", "xattn_sweep"},  # modules only: no LM, no generate
}


MEMORY_KINDS = ("train", "generate", "resampler", "xattn_block")

SLOW_BF16_FRACTION = 0.1
"""Below this fraction of its fp32 matmul peak, an interpreter's bf16 arithmetic is emulated (AVX2-only CPUs: about
1 GFLOP/s against 124 in fp32 on one such AMD EPYC), and a bf16 training step of the cpu-small suite takes about a
minute instead of a third of a second."""


def split_slow_bf16(tasks: list[dict[str, Any]], peaks: dict[str, dict[str, float]],
                    keep: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The tasks to run and the bf16 tasks to skip (``{"key", "reason"}`` each) on a CPU without native bf16.

    ``peaks`` maps each interpreter (``ours`` / ``peers``) to its measured matmul peaks in FLOP/s by dtype. Where any
    interpreter's bf16 peak is under ``SLOW_BF16_FRACTION`` of its fp32 peak, the bf16 rows (training, queries with
    bf16 weights) would take hours for both sides and measure only the emulation, so they are skipped unless
    ``keep``.
    """
    slow = {side: p for side, p in peaks.items()
            if p.get("fp32") and p.get("bf16") is not None and p["bf16"] < SLOW_BF16_FRACTION * p["fp32"]}
    if keep or not slow:
        return tasks, []
    side, p = next(iter(slow.items()))
    reason = (f"the bf16 matmul peak is {p['bf16'] / 1e9:.1f} GFLOP/s against {p['fp32'] / 1e9:.0f} in fp32 "
              f"({'our' if side == 'ours' else 'the peer'} interpreter): this CPU has no native bf16 arithmetic, so "
              "a bf16 training step would take about a minute, and every bf16 row would time only the emulation "
              "(--slow-bf16 measures them anyway)")
    skipped = [t for t in tasks if t["kind"] in ("train", "generate") and is_bf16(t)]
    return ([t for t in tasks if t not in skipped],
            [{"key": task_key(t), "reason": reason} for t in skipped])


def is_bf16(task: dict[str, Any]) -> bool:
    """Whether a task computes in bf16: bf16 training (autocast, or with frozen weights stored in bf16) or a query
    with the weights in bf16."""
    return str(task.get("precision", task.get("dtype", "fp32"))).startswith("bf16")


def task_key(task: dict[str, Any]) -> str:
    """A stable name for a task, e.g. ``train/bf16`` or ``generate/shots=8/beams=3``."""
    kind = task["kind"]
    if kind == "train":
        return f"train/{task['precision']}"
    if kind == "generate":
        key = f"generate/shots={task['shots']}/beams={task['num_beams']}"
        return key + "/bf16" if is_bf16(task) else key
    return kind
