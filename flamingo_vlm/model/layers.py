"""Small building blocks shared by the resampler and the cross-attention blocks."""

from __future__ import annotations

import torch
from torch import nn


class SquaredReLU(nn.Module):
    """relu(x)^2: the paper found it better than GeLU in the new layers (App. A.1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).square()


class FeedForward(nn.Module):
    """Pre-norm feed-forward, ``mult`` times wider inside, squared ReLU."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, dim * mult, bias=False)
        self.act = SquaredReLU()
        self.down = nn.Linear(dim * mult, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(self.norm(x))))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., N, heads * head_dim) -> (..., heads, N, head_dim)."""
    *lead, n, width = x.shape
    return x.view(*lead, n, heads, width // heads).transpose(-3, -2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(..., heads, N, head_dim) -> (..., N, heads * head_dim)."""
    *lead, heads, n, head_dim = x.shape
    return x.transpose(-3, -2).reshape(*lead, n, heads * head_dim)
