"""Audio encoder networks: the shared base ``AudioEncoderNet`` and the ViT encoder.

``AudioEncoderNet`` is the encoder interface the rest of the toolkit uses (embedding
extraction, RankMe, probes):

- ``forward_features(mel, layers=None, lengths=None) -> list[Tensor (B, T_tokens, D)]``:
  the full, unmasked token sequence through the blocks. ``mel`` is log-mel dB
  (B, n_mels, T); T is cut to a multiple of the patch width (the remainder is dropped)
  and must not exceed ``max_frames``. ``layers`` indexes the blocks: ``i`` is the output
  of block ``i`` (0-based, the residual stream), negative values count from the end, and
  the last block (``-1`` = ``n_layers - 1``) is returned after the final LayerNorm, i.e.
  the encoder output. Default ``[-1]``. ``lengths`` (B,) valid frames per example for a
  padded batch: padded tokens are masked out as attention keys (they still get outputs,
  which the caller must ignore; a token is valid when all its frames are valid, at least
  one token per example is kept). For square patches the frequency patches of each time
  step are averaged, so T_tokens is always the number of time steps.
- attributes ``dim``, ``n_layers``, ``frames_per_token`` (mel frames per output token),
  ``max_frames`` (longest input the positional table serves).

The ViT encoder (MAE, He et al. 2022) sees only the visible tokens during pretraining:
patches are gathered with index ops before the patch projection, so masked patches cost
nothing in the encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from audioscale.models.blocks import Block
from audioscale.models.patch import PatchGeometry, crop_frames, normalise_mel, patchify
from audioscale.models.posemb import sincos_table


class AudioEncoderNet(nn.Module):
    """Patch projection + fixed sin-cos positions + blocks + final LayerNorm."""

    def __init__(
        self,
        geom: PatchGeometry,
        width: int,
        depth: int,
        max_frames: int,
        input_norm: str = "fixed",
    ):
        super().__init__()
        self.geom = geom
        self.dim = width
        self.n_layers = depth
        self.frames_per_token = geom.patch_w
        self.max_t = max_frames // geom.patch_w
        self.max_frames = self.max_t * geom.patch_w
        # optional learnable per-mel-bin BatchNorm after the fixed affine (Dasheng,
        # Dinkel et al. 2024): batch statistics in training, running statistics in eval
        if input_norm not in ("fixed", "batchnorm"):
            raise ValueError(f"unknown input_norm {input_norm!r}")
        self.input_norm = nn.BatchNorm1d(geom.n_mels) if input_norm == "batchnorm" else None
        self.patch_embed = nn.Linear(geom.patch_dim, width)
        pos = sincos_table(self.max_t, geom.n_freq, width)[None]
        self.register_buffer("pos_embed", pos, persistent=False)
        self.blocks = nn.ModuleList()
        self.norm = nn.LayerNorm(width)

    def patches(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel dB (B, n_mels, T), any float dtype -> normalised patches (B, N, patch_dim)
        in the parameters' dtype (fp16 feature-cache values are upcast)."""
        if mel.dim() != 3 or mel.shape[1] != self.geom.n_mels:
            raise ValueError(f"expected (B, {self.geom.n_mels}, T) log-mel, got {tuple(mel.shape)}")
        mel = crop_frames(mel, self.geom.patch_w).to(self.patch_embed.weight.dtype)
        t = mel.shape[-1]
        if t == 0 or t > self.max_frames:
            raise ValueError(
                f"{mel.shape[-1]} frames: need between {self.geom.patch_w} and {self.max_frames}"
                " (raise model.max_seconds or chunk the input)"
            )
        mel = normalise_mel(mel)
        if self.input_norm is not None:
            mel = self.input_norm(mel)
        return patchify(mel, self.geom)

    def layer_index(self, layer: int) -> int:
        i = layer + self.n_layers if layer < 0 else layer
        if not 0 <= i < self.n_layers:
            raise ValueError(f"layer {layer} out of range for {self.n_layers} blocks")
        return i

    def run_blocks(
        self,
        x: torch.Tensor,
        layers: list[int],
        attn_mask: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        idx = [self.layer_index(i) for i in layers]
        keep = {}
        for i, blk in enumerate(self.blocks[: max(idx) + 1]):
            x = blk(x, attn_mask, valid)
            if i in idx:
                keep[i] = self.norm(x) if i == self.n_layers - 1 else x
        return [keep[i] for i in idx]

    def padding(
        self, lengths: torch.Tensor | list[int] | None, b: int, n: int, device: torch.device
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(attn_mask (B, 1, 1, N) bool, valid (B, N, 1) float) or (None, None)."""
        if lengths is None:
            return None, None
        if not isinstance(lengths, torch.Tensor):
            lengths = torch.tensor(lengths)
        lengths = lengths.to(device).reshape(b)
        n_t = (lengths // self.geom.patch_w).clamp(min=1)
        t_of_token = torch.arange(n, device=device) // self.geom.n_freq
        ok = t_of_token[None, :] < n_t[:, None]
        return ok[:, None, None, :], ok[..., None].float()

    def time_tokens(self, x: torch.Tensor) -> torch.Tensor:
        nf = self.geom.n_freq
        if nf == 1:
            return x
        b, n, d = x.shape
        return x.reshape(b, n // nf, nf, d).mean(2)

    def forward_features(
        self,
        mel: torch.Tensor,
        layers: list[int] | None = None,
        lengths: torch.Tensor | list[int] | None = None,
    ) -> list[torch.Tensor]:
        p = self.patches(mel)
        b, n, _ = p.shape
        x = self.patch_embed(p) + self.pos_embed[:, :n]
        attn_mask, valid = self.padding(lengths, b, n, p.device)
        outs = self.run_blocks(x, layers if layers is not None else [-1], attn_mask, valid)
        return [self.time_tokens(o) for o in outs]

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Final-layer time tokens (B, T_tokens, D)."""
        return self.forward_features(mel)[0]


class ViTEncoder(AudioEncoderNet):
    """ViT encoder of pre-norm transformer blocks; MAE pretraining feeds visible tokens only."""

    def __init__(
        self,
        geom: PatchGeometry,
        width: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        max_frames: int,
        input_norm: str = "fixed",
    ):
        super().__init__(geom, width, depth, max_frames, input_norm)
        self.blocks.extend(Block(width, heads, mlp_ratio) for _ in range(depth))

    def encode_visible(self, patches: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """patches (B, N, P) normalised, ids_keep (B, n_keep) -> (B, n_keep, D) after norm."""
        b, n, p = patches.shape
        idx = ids_keep[..., None]
        vis = torch.gather(patches, 1, idx.expand(-1, -1, p))
        pos = torch.gather(self.pos_embed[:, :n].expand(b, -1, -1), 1, idx.expand(-1, -1, self.dim))
        x = self.patch_embed(vis) + pos
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)
