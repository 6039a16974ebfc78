"""The attention helper shared by the resampler and the cross-attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flamingo_vlm.model.layers import attend


@pytest.mark.parametrize("masked", [False, True])
def test_reduced_precision_cpu_path_matches_the_fp32_kernel(masked: bool) -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 7, 16), torch.randn(3, 4, 5, 16), torch.randn(3, 4, 5, 16)
    mask = torch.rand(3, 1, 7, 5) < 0.6 if masked else None
    if mask is not None:
        mask[..., 0] = True  # every query may attend somewhere
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(attend(q, k, v, mask), reference)  # fp32: PyTorch's kernel itself
    low = [t.bfloat16().requires_grad_() for t in (q, k, v)]
    out = attend(*low, mask)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=3e-2, rtol=3e-2)
    # Gradients agree with the fp32 kernel's too (the path is used for bf16 autocast training).
    out.float().square().sum().backward()
    full = [t.clone().requires_grad_() for t in (q, k, v)]
    F.scaled_dot_product_attention(*full, attn_mask=mask).square().sum().backward()
    for got, want in zip(low, full, strict=True):
        torch.testing.assert_close(got.grad.float(), want.grad, atol=6e-2, rtol=6e-2)


def test_under_autocast_the_result_is_bf16_and_close() -> None:
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 4, 9, 32), torch.randn(2, 4, 16, 32), torch.randn(2, 4, 16, 32)
    proj = torch.nn.Linear(32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attend(proj(q), proj(k), proj(v))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), F.scaled_dot_product_attention(proj(q), proj(k), proj(v)),
                               atol=3e-2, rtol=3e-2)
