"""The bf16-on-this-CPU note (said only when fp32 matmuls are clearly faster, with the measured figures) and
``precision: auto`` (the faster of the two)."""

from __future__ import annotations

import math

import pytest
import torch

from flamingo_vlm.training.cpu_precision import (
    CLEARLY_FASTER,
    affordable_side,
    bf16_slower_note,
    matmul_gflops,
    resolve_precision,
)


def _measured(fp32: float, bf16: float):
    return lambda dtype: {torch.float32: fp32, torch.bfloat16: bf16}[dtype]


def test_the_note_names_both_speeds_when_fp32_is_clearly_faster() -> None:
    note = bf16_slower_note(_measured(fp32=277.0, bf16=167.0))
    assert note is not None and "167 GFLOP/s in bf16 against 277 in fp32" in note and "precision: fp32" in note


def test_no_note_where_bf16_is_faster_or_the_gap_is_within_timing_noise() -> None:
    # A Xeon with AMX (an AMD EPYC with AVX512-bf16 and no AMX runs bf16 4-6x fp32 too).
    assert bf16_slower_note(_measured(fp32=300.0, bf16=1200.0)) is None
    assert bf16_slower_note(_measured(fp32=0.99 * CLEARLY_FASTER * 100.0, bf16=100.0)) is None
    assert bf16_slower_note(_measured(fp32=1.01 * CLEARLY_FASTER * 100.0, bf16=100.0)) is not None


def test_matmul_speed_is_a_positive_rate_for_both_dtypes() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        rate = matmul_gflops(dtype, side=64, repeats=3)
        assert rate > 0 and math.isfinite(rate)


def test_auto_takes_the_faster_precision_and_an_explicit_one_is_kept_unmeasured() -> None:
    # A Xeon with AVX512-bf16 and no AMX, where bf16 is the slower.
    assert resolve_precision("auto", gflops=_measured(fp32=277.0, bf16=167.0)) == "fp32"
    assert resolve_precision("auto", gflops=_measured(fp32=300.0, bf16=1200.0)) == "bf16"  # an AMX CPU
    assert resolve_precision("auto", gflops=_measured(fp32=110.0, bf16=100.0)) == "bf16"  # within timing noise

    def unmeasurable(dtype: torch.dtype) -> float:
        raise AssertionError("an explicit precision needs no measurement")

    assert resolve_precision("fp32", gflops=unmeasurable) == "fp32"
    assert resolve_precision("bf16", gflops=unmeasurable) == "bf16"
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'bf16', 'auto'\], got 'fp16'"):
        resolve_precision("fp16")


def test_timing_leaves_a_seeded_run_s_random_numbers_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    matmul_gflops(torch.float32, side=32, repeats=1)
    assert torch.equal(torch.rand(3), expected)


def test_a_square_too_slow_to_time_is_halved_down_to_the_probe_and_a_fast_one_is_kept() -> None:
    # no CPU multiplies 1024 squares in a nanosecond or takes an hour over one: both ends are certain
    assert affordable_side(torch.float32, side=1024, max_call_seconds=1e-9) == 256
    assert affordable_side(torch.float32, side=1024, max_call_seconds=3600.0) == 1024
    assert affordable_side(torch.float32, side=128, max_call_seconds=1e-9) == 128  # never above what was asked
    assert matmul_gflops(torch.bfloat16, side=1024, max_call_seconds=1e-9, repeats=1) > 0
