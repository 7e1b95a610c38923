"""Parameter counts and analytic FLOPs of an MAE.

Parameters (``count_params``): non-embedding counts follow Kaplan et al. 2020 ("Scaling
Laws for Neural Language Models"), which exclude the embedding tables (vocabulary and
positional) because they cost no compute per token. Here that means the learned mask
tokens; the positional tables are fixed sin-cos buffers and hold no parameters at all.
The patch projection and the decoder's prediction head are linear maps applied to every
token (they carry FLOPs), so they count as non-embedding parameters. ``encoder_nonembed``
is the N of encoder scaling laws; ``nonembed`` includes the decoder.

FLOPs (``forward_flops_per_example``, ``train_flops_per_example``): matrix multiplies
and convolutions only, 2 FLOPs per multiply-accumulate, biases, norms, activations,
softmax and index ops ignored (they are O(N·d), not O(N·d²)). Per example of
``clip_seconds`` the frontend gives ``1 + samples // hop`` frames, cut to a multiple of
the patch width: ``n_t`` time steps, ``N = n_t * n_freq`` patches, ``n_vis = N -
round(N * mask_ratio)`` visible ones (patch.n_visible). With width d, MLP hidden h and
n tokens, one transformer block costs ``2n(4d² + 2dh)`` for qkv/out/MLP projections plus
``4n²d`` for the attention scores QKᵀ and the weighted sum AV; a conformer block adds the
conv module ``2n(2d² + d²) + 2n·d·k·k_f`` (pointwise in/out and depthwise (k, k_f)).

- ViT pretraining forward: patch projection and encoder on n_vis tokens, decoder input
  projection on n_vis, decoder blocks and prediction head on N.
- Conformer pretraining forward: patch projection and encoder on all N tokens (mask
  tokens in place), decoder on N.
- Training = 3 × forward (backward ≈ 2 × forward: gradients w.r.t. activations and
  weights, Kaplan et al.'s 6N per token). This slightly over-counts the first layer,
  whose input needs no gradient.
- Embedding (``forward_flops_per_example``): patch projection and encoder on all N
  tokens, no decoder.

Checked against ``torch.utils.flop_counter.FlopCounterMode`` in tests/test_accounting.py.

``cost_estimate_flops_per_example`` is a cruder figure that only orders a sweep's jobs
(``sweep.cost.job_cost``): the block projections and MLPs, ``6 · (4 + 2 · mlp_ratio)
· d² · tokens`` per block, the encoder on the visible tokens (either family) and the
decoder on all; attention scores and the patch, decoder-input and head projections left
out.

Torch-free: the sweep's parent process and config checks call it without loading torch
(``count_params`` takes a built module and only walks its parameters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from audioscale.audio.frames import frames_for_seconds
from audioscale.config import FrontendConfig, ModelConfig
from audioscale.models.ladder import resolve
from audioscale.models.patch import geometry, n_visible

if TYPE_CHECKING:
    from torch import nn


def count_params(mae: nn.Module) -> dict[str, int]:
    """{"total", "encoder", "encoder_nonembed", "nonembed"} parameter counts."""
    total = sum(p.numel() for p in mae.parameters())
    encoder = sum(p.numel() for p in mae.encoder.parameters())
    emb = sum(p.numel() for n, p in mae.named_parameters() if _is_embedding(n))
    enc_emb = sum(p.numel() for n, p in mae.encoder.named_parameters() if _is_embedding(n))
    return {
        "total": total,
        "encoder": encoder,
        "encoder_nonembed": encoder - enc_emb,
        "nonembed": total - emb,
    }


def _is_embedding(name: str) -> bool:
    return name.endswith("mask_token") or name.endswith("pos_embed")


def tokens_per_example(
    model_cfg: ModelConfig, frontend_cfg: FrontendConfig | None, clip_seconds: float
) -> tuple[int, int]:
    """(N patches, n_vis visible patches) for one clip of ``clip_seconds``."""
    fe = frontend_cfg or FrontendConfig()
    g = geometry(model_cfg.patch, fe.n_mels)
    frames = frames_for_seconds(clip_seconds, fe)
    n = (frames // g.patch_w) * g.n_freq
    return n, n_visible(n, model_cfg.mask_ratio)


def block_flops(n: int, d: int, mlp_ratio: float) -> float:
    """Forward FLOPs of one transformer block on n tokens of width d."""
    h = int(d * mlp_ratio)
    return 2 * n * (4 * d * d + 2 * d * h) + 4 * n * n * d


def conv_module_flops(n: int, d: int, kernel: int, n_freq: int) -> float:
    """Forward FLOPs of the conformer conv module (blocks.ConvModule)."""
    return 2 * n * (2 * d * d + d * d) + 2 * n * d * kernel * min(3, n_freq)


def _encoder_flops(cfg: ModelConfig, n: int, patch_dim: int, n_freq: int) -> float:
    per_block = block_flops(n, cfg.width, cfg.mlp_ratio)
    if cfg.family == "conformer":
        per_block += conv_module_flops(n, cfg.width, cfg.conv_kernel, n_freq)
    return 2 * n * patch_dim * cfg.width + cfg.depth * per_block


def forward_flops_per_example(
    model_cfg: ModelConfig, frontend_cfg: FrontendConfig | None, clip_seconds: float
) -> float:
    """Encoder forward FLOPs on one unmasked clip (embedding extraction cost)."""
    cfg = resolve(model_cfg)
    fe = frontend_cfg or FrontendConfig()
    g = geometry(cfg.patch, fe.n_mels)
    n, _ = tokens_per_example(cfg, fe, clip_seconds)
    return float(_encoder_flops(cfg, n, g.patch_dim, g.n_freq))


def pretrain_forward_flops(
    model_cfg: ModelConfig, frontend_cfg: FrontendConfig | None, clip_seconds: float
) -> float:
    """Forward FLOPs of one MAE pretraining example (encoder + decoder + head)."""
    cfg = resolve(model_cfg)
    fe = frontend_cfg or FrontendConfig()
    g = geometry(cfg.patch, fe.n_mels)
    n, n_vis = tokens_per_example(cfg, fe, clip_seconds)
    n_enc = n_vis if cfg.family == "vit" else n
    enc = _encoder_flops(cfg, n_enc, g.patch_dim, g.n_freq)
    dw = cfg.decoder_width
    dec = 2 * n_enc * cfg.width * dw + cfg.decoder_depth * block_flops(n, dw, cfg.mlp_ratio)
    head = 2 * n * dw * g.patch_dim
    return float(enc + dec + head)


def train_flops_per_example(
    model_cfg: ModelConfig, frontend_cfg: FrontendConfig | None, clip_seconds: float
) -> float:
    """Training FLOPs of one example: 3 × the pretraining forward (see module docstring)."""
    return 3.0 * pretrain_forward_flops(model_cfg, frontend_cfg, clip_seconds)


def cost_estimate_flops_per_example(
    model_cfg: ModelConfig, frontend_cfg: FrontendConfig | None, clip_seconds: float
) -> float:
    """The job-ordering estimate of training FLOPs per example (module docstring)."""
    cfg = resolve(model_cfg)
    n, _ = tokens_per_example(cfg, frontend_cfg, clip_seconds)
    tokens = max(1, n)
    visible = n_visible(tokens, cfg.mask_ratio)
    macs = visible * cfg.width**2 * cfg.depth + tokens * cfg.decoder_width**2 * cfg.decoder_depth
    return 6 * (4 + 2 * cfg.mlp_ratio) * macs
