"""Masked autoencoder on log-mel patches (MAE, He et al. 2022; AudioMAE, Huang et al. 2022;
Dasheng, Dinkel et al. 2024).

Pretraining step, per example: patchify the normalised log-mel (patch.py), draw uniform
noise, ``argsort`` it and keep the first ``n_keep = N - round(N * mask_ratio)`` tokens
(at least one), so every example has exactly the same number of masked patches. The
``vit`` family encodes the visible tokens only; the decoder projects them to its width,
appends a learned mask token for every masked position, restores the original order
with ``gather`` and adds its own fixed sin-cos positions. The ``conformer`` family
encodes the full grid with mask tokens in place (conformer.py) and the decoder only
refines it. The loss is the mean squared error over masked patches only; with
``norm_pix_loss`` each target patch is normalised by its own mean and (population)
variance, ``(p - mean) / sqrt(var + 1e-6)``, as MAE. ``MAEOutput.pred`` holds the
predictions for all patches (B, N, patch_dim) in target space and ``mask`` is 1 for
masked patches.

Determinism: pass a ``torch.Generator`` and the mask depends only on it (it is drawn on
the generator's device, then moved). Initialisation follows MAE: xavier-uniform linear
weights, zero biases, LayerNorm (1, 0), mask tokens N(0, 0.02). The loss is computed in
float32 under bf16 autocast.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from audioscale.audio.frames import frames_for_seconds
from audioscale.config import FrontendConfig, ModelConfig
from audioscale.errors import ConfigError
from audioscale.models.blocks import Block
from audioscale.models.conformer import ConformerEncoder
from audioscale.models.ladder import resolve
from audioscale.models.patch import geometry, n_visible
from audioscale.models.posemb import sincos_table
from audioscale.models.vit import AudioEncoderNet, ViTEncoder


class MAEOutput(NamedTuple):
    loss: torch.Tensor  # scalar, float32
    pred: torch.Tensor  # (B, N, patch_dim) predictions for every patch
    mask: torch.Tensor  # (B, N) float, 1 = masked (the loss is over these)


def random_masking(
    b: int,
    n: int,
    mask_ratio: float,
    device: torch.device,
    generator: torch.Generator | None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> ids_keep (B, n_keep), ids_restore (B, N), mask (B, N) float (1 = masked).

    ``noise`` (B, N) uniforms drawn by the caller replace the draw here; the trainer passes
    them so that a compiled forward holds no generator (which would split the graph)."""
    if noise is not None:
        noise = noise.to(device)
    elif generator is not None:
        noise = torch.rand(b, n, generator=generator, device=generator.device).to(device)
    else:
        noise = torch.rand(b, n, device=device)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    keep = n_visible(n, mask_ratio)
    mask = (ids_restore >= keep).float()
    return ids_shuffle[:, :keep], ids_restore, mask


class Decoder(nn.Module):
    """Light transformer decoder: embed, (insert mask tokens), positions, blocks, norm, head."""

    def __init__(
        self,
        enc_dim: int,
        width: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        patch_dim: int,
        max_t: int,
        n_freq: int,
        insert_mask_tokens: bool,
    ):
        super().__init__()
        self.embed = nn.Linear(enc_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width)) if insert_mask_tokens else None
        self.register_buffer(
            "pos_embed", sincos_table(max_t, n_freq, width)[None], persistent=False
        )
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.pred = nn.Linear(width, patch_dim)

    def forward(self, h: torch.Tensor, ids_restore: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(h)
        if ids_restore is not None:
            b, n = ids_restore.shape
            fill = self.mask_token.to(x.dtype).expand(b, n - x.shape[1], -1)
            x = torch.cat([x, fill], dim=1)
            x = torch.gather(x, 1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))
        x = x + self.pos_embed[:, : x.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x))


class MAE(nn.Module):
    def __init__(self, cfg: ModelConfig, frontend: FrontendConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend_cfg = frontend
        self.geom = geom = geometry(cfg.patch, frontend.n_mels)
        self.mask_ratio = cfg.mask_ratio
        self.norm_pix_loss = cfg.norm_pix_loss
        max_frames = max_frames_for(cfg.max_seconds, frontend)
        args = (geom, cfg.width, cfg.depth, cfg.heads, cfg.mlp_ratio, max_frames)
        if cfg.family == "vit":
            self.encoder: AudioEncoderNet = ViTEncoder(*args, input_norm=cfg.input_norm)
        else:
            self.encoder = ConformerEncoder(
                *args, conv_kernel=cfg.conv_kernel, input_norm=cfg.input_norm
            )
        self.decoder = Decoder(
            cfg.width,
            cfg.decoder_width,
            cfg.decoder_depth,
            cfg.decoder_heads,
            cfg.mlp_ratio,
            geom.patch_dim,
            self.encoder.max_t,
            geom.n_freq,
            insert_mask_tokens=cfg.family == "vit",
        )
        self.apply(_init_weights)
        for name, p in self.named_parameters():
            if name.endswith("mask_token"):
                nn.init.normal_(p, std=0.02)

    def targets(self, patches: torch.Tensor) -> torch.Tensor:
        if not self.norm_pix_loss:
            return patches
        # the same formula as one fused kernel: layer_norm without affine is
        # (p - mean) / sqrt(var + eps), population variance (aten::var's Welford pass
        # alone took ~6 % of a femto step on CPU; bench/RESULTS.md, "CPU step")
        return F.layer_norm(patches, patches.shape[-1:], eps=1e-6)

    def forward(
        self,
        mel: torch.Tensor,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> MAEOutput:
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        patches = self.encoder.patches(mel)
        b, n, _ = patches.shape
        ids_keep, ids_restore, mask = random_masking(b, n, ratio, patches.device, generator, noise)
        if isinstance(self.encoder, ViTEncoder):
            pred = self.decoder(self.encoder.encode_visible(patches, ids_keep), ids_restore)
        else:
            pred = self.decoder(self.encoder.encode_masked(patches, mask))
        pred = pred.float()
        err = (pred - self.targets(patches.float())).pow(2).mean(dim=-1)
        loss = (err * mask).sum() / mask.sum().clamp(min=1.0)
        return MAEOutput(loss, pred, mask)

    @torch.no_grad()
    def reconstruction_loss(
        self,
        mel: torch.Tensor,
        generator: torch.Generator | None = None,
        mask_ratio: float | None = None,
    ) -> torch.Tensor:
        """Masked-patch loss without gradients (held-out loss); seed ``generator`` to compare."""
        return self.forward(mel, mask_ratio, generator).loss


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def max_frames_for(max_seconds: float, frontend: FrontendConfig) -> int:
    """Frames of a centred log-mel of ``max_seconds`` (``audio.frames.frames_for``)."""
    return frames_for_seconds(max_seconds, frontend)


def build_mae(model_cfg: ModelConfig, frontend_cfg: FrontendConfig | None = None) -> MAE:
    """Resolve ``model_cfg`` (ladder.resolve) and build the MAE for this frontend."""
    frontend_cfg = frontend_cfg or FrontendConfig()
    cfg = resolve(model_cfg)
    if cfg.patch == "square" and frontend_cfg.n_mels % 16:
        raise ConfigError(
            "model.patch",
            f"square needs frontend.n_mels divisible by 16, got {frontend_cfg.n_mels}",
        )
    g = geometry(cfg.patch, frontend_cfg.n_mels)
    if max_frames_for(cfg.max_seconds, frontend_cfg) < g.patch_w:
        raise ConfigError("model.max_seconds", f"{cfg.max_seconds} s is shorter than one patch")
    return MAE(cfg, frontend_cfg)
