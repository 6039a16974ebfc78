"""Whether bf16 autocast actually pays on this CPU.

Which CPUs run bf16 fast cannot be read from their instruction sets, so it is measured. A 1024x1024 matmul in bf16
against fp32, on 2-core machines: about 4.5x faster on an Intel Xeon with AMX tiles (1,297 GFLOP/s against 267) and
4-6x on an AMD EPYC with AVX512-bf16 and no AMX (845-917 against 145-200, 2026-12-07), but 0.6x on an Intel Xeon with
AVX512-bf16 and no AMX (167 against 277; the recipe's Flamingo stage trained at 1,420 tokens/s under bf16 autocast
against 2,300 in fp32, 2026-11-30), a fifth on one with AVX-512 and no bf16, and about 140 times slower on AVX2
alone, where bf16 is emulated. A run asked for ``precision: bf16`` on a CPU says so when fp32 would be
clearly faster; it never switches by itself, because the precision changes the numbers a run produces. A run asked
for ``precision: auto`` gets the faster of the two (:func:`resolve_precision`) and records which.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import torch

PRECISIONS = ("fp32", "bf16", "auto")  # what a run may ask for; "auto" resolves to one of the other two
SIDE = 1024  # matmul size: large enough to reach a kernel's steady speed, small enough to time in ~0.1 s
PROBE_SIDE = 256  # a first call this size says how large a square can be timed quickly
MAX_CALL_SECONDS = 0.1  # one timed call's limit: 1024 squares in fp32 or native bf16 take 0.01-0.02 s
CLEARLY_FASTER = 1.2  # fp32 must beat bf16 by this factor before a run is told (timings on shared machines wobble)


def affordable_side(dtype: torch.dtype, side: int = SIDE, max_call_seconds: float = MAX_CALL_SECONDS) -> int:
    """``side``, or its largest halving (down to 256) whose one square matmul in ``dtype`` fits within
    ``max_call_seconds``, judged from the faster of two timed calls of at most 256 square. A CPU that emulates
    bf16 (AVX2 only) takes 2.4 s for one 1024-square call, which made every run asking for ``precision: auto``
    spend 15 s measuring."""
    generator = torch.Generator().manual_seed(0)  # its own: timing must not move a seeded run's random numbers
    probe_side = min(side, PROBE_SIDE)
    probe = torch.randn(probe_side, probe_side, generator=generator).to(dtype)
    probe @ probe  # warm-up: the first call pays for thread start and kernel choice
    seconds = []
    for _ in range(2):  # the faster of two: one hiccup of a shared machine must not shrink the timed square
        start = time.perf_counter()
        probe @ probe
        seconds.append(time.perf_counter() - start)
    probe_rate = 2 * probe_side**3 / max(min(seconds), 1e-9)  # FLOP/s
    while side > probe_side and 2 * side**3 / probe_rate > max_call_seconds:
        side //= 2
    return side


def matmul_gflops(dtype: torch.dtype, *, side: int = SIDE, repeats: int = 5,
                  max_call_seconds: float = MAX_CALL_SECONDS) -> float:
    """Median GFLOP/s of a square matmul in ``dtype`` with the current torch threads (after one warm-up):
    ``side`` x ``side``, or smaller where one call would take longer than ``max_call_seconds``
    (:func:`affordable_side`)."""
    side = affordable_side(dtype, side, max_call_seconds)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(side, side, generator=generator).to(dtype) for _ in range(2))
    a @ b
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    return 2 * side**3 / sorted(seconds)[repeats // 2] / 1e9


@functools.cache  # the CPU does not change within a process: a recipe's several training runs measure once
def bf16_slower_note(gflops: Callable[[torch.dtype], float] = matmul_gflops) -> str | None:
    """A one-line note when bf16 matmuls run clearly slower than fp32 here, else None. ``gflops`` measures one dtype
    (replaceable in tests)."""
    fp32, bf16 = gflops(torch.float32), gflops(torch.bfloat16)
    if fp32 < CLEARLY_FASTER * bf16:
        return None
    return (f"bf16 is slow on this CPU: square matmuls (up to {SIDE}) run at {bf16:.0f} GFLOP/s in bf16 against "
            f"{fp32:.0f} in fp32; precision: fp32 would likely train faster here, "
            "with other numbers.")


def resolve_precision(precision: str, device_type: str = "cpu",
                      gflops: Callable[[torch.dtype], float] = matmul_gflops) -> str:
    """The autocast precision a run uses: ``"fp32"`` or ``"bf16"`` as asked, or for ``"auto"`` bf16 unless it is
    the slower here (on a CPU: :func:`bf16_slower_note`, measured once per process; on CUDA: bf16 where the GPU
    supports it). ``gflops`` measures one dtype (replaceable in tests)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device_type != "cpu":
        return "fp32"
    return "fp32" if bf16_slower_note(gflops) else "bf16"
