"""Fixed sine-cosine positional embeddings (Vaswani et al. 2017; MAE, He et al. 2022).

Tables are built for the longest clip (``max_seconds``) and sliced: for time-major token
order (see patch.py) the first ``n_t * n_freq`` rows serve any shorter clip, and a row's
value depends only on its own (t, f), never on the table size.

- one frequency patch (time geometry): 1-D embedding of the time index over all D dims;
- several frequency patches (square geometry): 2-D, half the dims encode time, half
  frequency (as MAE's 2-D sin-cos), so D must be divisible by 4.
"""

from __future__ import annotations

import torch


def sincos_1d(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """(N,) positions -> (N, dim): [sin(p w_k), cos(p w_k)], w_k = 10000^(-2k/dim)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    ang = pos.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([ang.sin(), ang.cos()], dim=1).float()


def sincos_table(n_t: int, n_freq: int, dim: int) -> torch.Tensor:
    """(n_t * n_freq, dim) table in time-major token order."""
    t = torch.arange(n_t).repeat_interleave(n_freq)
    if n_freq == 1:
        return sincos_1d(t, dim)
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs dim divisible by 4, got {dim}")
    f = torch.arange(n_freq).repeat(n_t)
    return torch.cat([sincos_1d(t, dim // 2), sincos_1d(f, dim // 2)], dim=1)
