"""Patch geometry, visible tokens, input normalisation and (un)patchify of log-mel spectrograms.

Two geometries (docs/ARCHITECTURE.md, models):
- ``time``: full-height patches of n_mels x 4 frames (Dasheng, Dinkel et al. 2024): one
  token per 40 ms, 25 tokens/s at a 10 ms hop.
- ``square``: 16 x 16 patches (AudioMAE, Huang et al. 2022) on e.g. 128 mels.

Token order is time-major: token ``t * n_freq + f`` is time step ``t``, frequency patch
``f``. So the first ``n_t * n_freq`` entries of a positional table serve a clip of ``n_t``
time steps, and the frequency patches of one time step are contiguous. Inside a patch the
values are ordered (mel, frame), row-major.

Input normalisation uses fixed constants, never data statistics, so training and
embedding extraction take the same path: ``(x - MEL_SHIFT) / MEL_SCALE`` with
``MEL_SHIFT = -45`` dB and ``MEL_SCALE = 30`` dB. Measured on 40 asterisk speech prompts
with our frontend's settings (power mel, n_fft 512, hop 160, 64 Slaney bands, 10*log10,
amin 1e-10): mean -47 dB, std 33 dB, median -37 dB, digital silence at -100 dB; white
noise at 0.1 rms sits near -13 dB. So typical inputs land in about [-2, 1.5]. With
``norm_pix_loss`` the targets do not depend on these constants; only the input scale does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tensors pass through; the geometry and token counts need no torch
    import torch

MEL_SHIFT = -45.0
MEL_SCALE = 30.0


@dataclass(frozen=True)
class PatchGeometry:
    n_mels: int
    patch_h: int  # mel bands per patch
    patch_w: int  # frames per patch

    @property
    def n_freq(self) -> int:
        return self.n_mels // self.patch_h

    @property
    def patch_dim(self) -> int:
        return self.patch_h * self.patch_w


def geometry(patch: str, n_mels: int) -> PatchGeometry:
    """``time`` -> (n_mels x 4), ``square`` -> (16 x 16, n_mels divisible by 16)."""
    if patch == "time":
        return PatchGeometry(n_mels, n_mels, 4)
    if patch == "square":
        if n_mels % 16:
            raise ValueError(f"square patches need n_mels divisible by 16, got {n_mels}")
        return PatchGeometry(n_mels, 16, 16)
    raise ValueError(f"unknown patch geometry {patch!r}")


def n_visible(n: int, mask_ratio: float) -> int:
    """Visible tokens for ``n`` patches: ``n - round(n * ratio)``, at least 1."""
    return max(1, n - round(n * mask_ratio))


def normalise_mel(mel: torch.Tensor) -> torch.Tensor:
    """Fixed affine normalisation of log-mel dB (see module docstring)."""
    return (mel - MEL_SHIFT) / MEL_SCALE


def crop_frames(mel: torch.Tensor, patch_w: int) -> torch.Tensor:
    """Drop trailing frames so T is a multiple of the patch width."""
    t = mel.shape[-1]
    return mel[..., : t - t % patch_w]


def patchify(mel: torch.Tensor, g: PatchGeometry) -> torch.Tensor:
    """(B, n_mels, T) with T % patch_w == 0 -> (B, n_t * n_freq, patch_h * patch_w)."""
    b, f, t = mel.shape
    nf, nt = f // g.patch_h, t // g.patch_w
    x = mel.reshape(b, nf, g.patch_h, nt, g.patch_w)
    return x.permute(0, 3, 1, 2, 4).reshape(b, nt * nf, g.patch_dim)


def unpatchify(patches: torch.Tensor, g: PatchGeometry) -> torch.Tensor:
    """Inverse of patchify: (B, n_t * n_freq, patch_dim) -> (B, n_mels, n_t * patch_w)."""
    b, n, _ = patches.shape
    nf = g.n_freq
    nt = n // nf
    x = patches.reshape(b, nt, nf, g.patch_h, g.patch_w).permute(0, 2, 3, 1, 4)
    return x.reshape(b, nf * g.patch_h, nt * g.patch_w)
