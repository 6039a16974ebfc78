"""Timing, peak memory and the matmul peak: the same code in both interpreters (standard library + torch).

Peak memory: Linux keeps a per-process resident high-water mark (``VmHWM``); writing ``5`` to
``/proc/self/clear_refs`` resets it to the current resident size. A measurement records the resident size after
imports, model build and input creation (``baseline``), resets the mark, runs warm-up and timed repetitions, and
reports ``peak_delta_mb = VmHWM - baseline``: the extra memory the workload needed at its worst moment (activations,
gradients, optimiser state, caches, allocator growth). ``peak_rss_mb`` is the whole process's high-water mark over
the same window (it includes the interpreter, libraries and weights, so it also reflects each side's torch build).
Where ``clear_refs`` is unavailable, ``ru_maxrss`` (never reset) is used instead and the method is recorded.

Weights belong to the baseline: ``safetensors`` loading leaves them memory-mapped from the checkpoint file, and a
mapped page becomes resident only when first read, so without :func:`page_in` a model loaded that way would count
its own weights as memory of its first call (about 13 MB of our 0-shot greedy query's 29 in the cpu-small suite).
Each side's model builder pages its model in before any measurement starts.
"""

from __future__ import annotations

import gc
import itertools
import math
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def page_in(module: Any) -> None:
    """Read every parameter and buffer of ``module`` once, so that weights still mapped from a checkpoint file are
    resident before a measurement's baseline is taken (see the module docstring)."""
    import torch

    with torch.no_grad():
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            if tensor.numel() and tensor.device.type == "cpu":
                tensor.sum()


class MemoryProbe:
    """``start()`` before the workload, ``stop()`` after: peak resident memory of the window, in MB."""

    def start(self) -> None:
        gc.collect()
        self.baseline_kb = _status_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.method = "VmHWM after clear_refs" if _reset_high_water_mark() else "ru_maxrss (not reset)"

    def stop(self) -> dict[str, Any]:
        if self.method.startswith("VmHWM"):
            peak_kb = _status_kb("VmHWM") or 0
        else:
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"peak_rss_mb": peak_kb / 1024, "baseline_rss_mb": self.baseline_kb / 1024,
                "peak_delta_mb": max(0, peak_kb - self.baseline_kb) / 1024, "memory_method": self.method}


def time_calls(fn: Callable[[], Any], warmup: int, reps: int) -> tuple[list[float], list[Any]]:
    """Call ``fn`` ``warmup`` times untimed, then ``reps`` times timed; returns seconds and return values."""
    for _ in range(warmup):
        fn()
    seconds, values = [], []
    for _ in range(reps):
        start = time.perf_counter()
        value = fn()
        seconds.append(time.perf_counter() - start)
        values.append(value)
    return seconds, values


def summary(values: list[float]) -> dict[str, Any]:
    """Median and min-max of repetitions (the raw values are kept too)."""
    if not values:
        raise ValueError("no repetitions to summarise")
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": list(values)}


def inverse_summary(seconds: dict[str, Any], amount: float) -> dict[str, Any]:
    """A rate (``amount`` per second) from a summary of seconds: median from the median time, min-max swapped."""
    return {"median": amount / seconds["median"], "min": amount / seconds["max"], "max": amount / seconds["min"],
            "n": seconds["n"]}


def matmul_peak(dtype_name: str, size: int = 2048, reps: int = 6, max_call_seconds: float = 1.0) -> dict[str, Any]:
    """FLOP/s of one large square ``torch.matmul`` in ``dtype_name`` (the best of ``reps``): the MFU denominator.

    Where one call of ``size`` would take longer than ``max_call_seconds`` (bf16 on a CPU that emulates it: a
    2048-square call took 58 s on an AVX2-only AMD EPYC, so the peak alone took 7 minutes), the largest square
    halving of ``size`` that fits is timed instead, judged from a 256-square probe; ``size`` in the result says which.
    """
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    probe = min(size, 256)
    a = torch.randn(probe, probe).to(dtype)
    torch.matmul(a, a)
    start = time.perf_counter()
    torch.matmul(a, a)
    probe_rate = 2 * probe**3 / max(time.perf_counter() - start, 1e-9)
    while size > probe and 2 * size**3 / probe_rate > max_call_seconds:
        size //= 2
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.matmul(a, b)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - start)
    best = min(times)
    return {"flops_per_s": 2 * size**3 / best, "size": size, "seconds_best": best, "seconds_median": statistics.median(times)}


def finite_positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0
