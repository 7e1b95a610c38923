"""Transformer and conformer-style blocks.

- ``Attention``: fused qkv projection (one matmul), ``F.scaled_dot_product_attention`` (flash
  / memory-efficient kernels on GPU), output projection. Optional boolean ``attn_mask``
  of shape (B, 1, 1, N), True = attend (key padding).
- ``Block``: pre-norm transformer block, ``x + attn(ln(x))`` then ``x + mlp(ln(x))`` with a
  GELU MLP (ViT, Dosovitskiy et al. 2021; MAE, He et al. 2022). No dropout, no drop-path
  (MAE pretraining uses neither).
- ``ConformerBlock``: pre-norm ``x + attn(ln(x))``, ``x + conv(ln(x))``, ``x + ffn(ln(x))``,
  after Gulati et al. 2020 but kept plain: one full FFN instead of the two macaron
  half-FFNs, LayerNorm instead of BatchNorm in the conv module (batch statistics would mix
  mask tokens, padding and examples), SiLU (Swish) activations as in the paper.
- ``ConvModule``: pointwise (Linear d -> 2d) + GLU, depthwise conv over the token grid, SiLU,
  pointwise (Linear d -> d). The depthwise kernel is (k, 1) over (time, frequency) for
  time patches and (k, 3) for square patches, so it mixes neighbouring time steps (and
  neighbouring frequency patches). Padding tokens are zeroed before the conv so that
  they do not leak into valid positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # one backward (stack), not three zero-filled select_backward
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


class ConvModule(nn.Module):
    """Conformer convolution module over a (time, freq) token grid of width ``n_freq``."""

    def __init__(self, dim: int, kernel: int, n_freq: int = 1):
        super().__init__()
        self.n_freq = n_freq
        kf = min(3, n_freq)
        self.pw1 = nn.Linear(dim, 2 * dim)
        self.dw = nn.Conv2d(dim, dim, (kernel, kf), padding=(kernel // 2, kf // 2), groups=dim)
        self.act = nn.SiLU()
        self.pw2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        x = F.glu(self.pw1(x), dim=-1)
        if valid is not None:
            x = x * valid
        g = x.transpose(1, 2).reshape(b, d, n // self.n_freq, self.n_freq)
        x = self.dw(g).reshape(b, d, n).transpose(1, 2)
        return self.pw2(self.act(x))


class ConformerBlock(nn.Module):
    """Pre-norm MHSA + conv module + FFN block (see module docstring)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, kernel: int, n_freq: int = 1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm_conv = nn.LayerNorm(dim)
        self.conv = ConvModule(dim, kernel, n_freq)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), act=nn.SiLU)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask)
        x = x + self.conv(self.norm_conv(x), valid)
        return x + self.mlp(self.norm2(x))
