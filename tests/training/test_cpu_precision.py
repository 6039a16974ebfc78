"""The bf16-on-this-CPU note: said only when fp32 matmuls are clearly faster, with the measured figures."""

from __future__ import annotations

import math

import torch

from flamingo_vlm.training.cpu_precision import CLEARLY_FASTER, bf16_slower_note, matmul_gflops


def _measured(fp32: float, bf16: float):
    return lambda dtype: {torch.float32: fp32, torch.bfloat16: bf16}[dtype]


def test_the_note_names_both_speeds_when_fp32_is_clearly_faster() -> None:
    note = bf16_slower_note(_measured(fp32=277.0, bf16=167.0))
    assert note is not None and "167 GFLOP/s in bf16 against 277 in fp32" in note and "precision: fp32" in note


def test_no_note_where_bf16_is_faster_or_the_gap_is_within_timing_noise() -> None:
    assert bf16_slower_note(_measured(fp32=300.0, bf16=1200.0)) is None  # an AMX CPU
    assert bf16_slower_note(_measured(fp32=0.99 * CLEARLY_FASTER * 100.0, bf16=100.0)) is None
    assert bf16_slower_note(_measured(fp32=1.01 * CLEARLY_FASTER * 100.0, bf16=100.0)) is not None


def test_matmul_speed_is_a_positive_rate_for_both_dtypes() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        rate = matmul_gflops(dtype, side=64, repeats=3)
        assert rate > 0 and math.isfinite(rate)
