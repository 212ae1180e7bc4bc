"""Building blocks of the LGC-VD networks (paper §3.2, §4.2).

Residual blocks with additive time embedding, spatial self-attention, and the cross-attention
that injects the global context z (Eq. 10-11). The cross-attention is split in two halves:
`CrossAttention.project_context` (K, V from z: depends only on the previous window, so it runs
once per fragment, in the context graph) and `CrossAttention.forward` (Q from UNet features).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SKIP_SCALE = 1.0 / math.sqrt(2.0)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) or 1, channels, eps=1e-6)


def zero_init(module: nn.Module) -> nn.Module:
    """Start a residual branch's last layer at ~0, so each block begins as the identity."""
    nn.init.zeros_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the original-grid timestep index. (B,) -> (B, dim), fp32."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1)
    )
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    """GN -> SiLU -> conv (+ Dense(temb)) -> GN -> SiLU -> dropout -> conv; (x + h) / sqrt 2."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int | None, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb_dim, c_out) if temb_dim else None
        self.norm2 = group_norm(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 3, padding=1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.temb is not None:
            h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) + h) * SKIP_SCALE


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, heads, H*W, C/heads)."""
    b, c, h, w = x.shape
    return x.reshape(b, n_heads, c // n_heads, h * w).transpose(2, 3)


class SelfAttention(nn.Module):
    """Spatial multi-head self-attention over H*W tokens, no positional encoding."""

    def __init__(self, channels: int, head_channels: int):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=1)
        a = F.scaled_dot_product_attention(
            _heads(q, self.heads), _heads(k, self.heads), _heads(v, self.heads)
        )  # (B, heads, HW, d)
        a = a.transpose(2, 3).reshape(b, c, h, w)
        return (x + self.out(a)) * SKIP_SCALE


class CrossAttention(nn.Module):
    """UNet features attend to the global context z (paper Eq. 10-11).

    Q = W_Q f, K = W_K z, V = W_V z. `project_context(z)` returns (K, V), each
    (B, heads, Lz, d); `forward(x, k, v)` does the rest.
    """

    def __init__(self, channels: int, z_channels: int, head_channels: int):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = group_norm(channels)
        self.norm_z = group_norm(z_channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Conv2d(z_channels, 2 * channels, 1)
        self.out = zero_init(nn.Conv2d(channels, channels, 1))

    def project_context(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(self.norm_z(z)).chunk(2, dim=1)
        return _heads(k, self.heads), _heads(v, self.heads)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        a = F.scaled_dot_product_attention(_heads(self.q(self.norm(x)), self.heads), k, v)
        a = a.transpose(2, 3).reshape(b, c, h, w)
        return (x + self.out(a)) * SKIP_SCALE
