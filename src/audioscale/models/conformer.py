"""Conformer-style encoder that sees mask tokens in place (the second architecture family).

Every patch position is kept; masked patches are replaced by one learned mask token
(after the patch projection, before positions are added, as in SimMIM, Xie et al. 2022,
and BEiT), so any block type works, including convolutions that need the full grid.
Blocks are ``ConformerBlock`` (blocks.py): MHSA + depthwise conv module + FFN, after
Gulati et al. 2020. The encoder therefore costs about 1 / (1 - mask_ratio) times the ViT
encoder in pretraining (all tokens instead of visible ones); its decoder defaults to one
block (ladder.py). The embedding interface is the same as the ViT's (vit.py).
"""

from __future__ import annotations

import torch
from torch import nn

from audioscale.models.blocks import ConformerBlock
from audioscale.models.patch import PatchGeometry
from audioscale.models.vit import AudioEncoderNet


class ConformerEncoder(AudioEncoderNet):
    def __init__(
        self,
        geom: PatchGeometry,
        width: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        max_frames: int,
        conv_kernel: int = 31,
        input_norm: str = "fixed",
    ):
        super().__init__(geom, width, depth, max_frames, input_norm)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.blocks.extend(
            ConformerBlock(width, heads, mlp_ratio, conv_kernel, geom.n_freq) for _ in range(depth)
        )

    def encode_masked(self, patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """patches (B, N, P) normalised, mask (B, N) 1 = masked -> (B, N, D) after norm."""
        n = patches.shape[1]
        x = self.patch_embed(patches)
        x = torch.where(mask[..., None].bool(), self.mask_token.to(x.dtype), x)
        x = x + self.pos_embed[:, :n]
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)
